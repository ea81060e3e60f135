"""``graftkit.auto``: rank -> linear probe on the top candidates -> escalate (top-block fine-tuning, LoRA,
LP-FT: full fine-tuning from the probe's head) while the validation gain per minute justifies it and the budget
lasts -> choose by validation, never by test -> score the test set -> save the artifact and the leaderboard.

The classical baseline of the modality is always on the leaderboard; when it beats every pretrained candidate
on validation the result says so in one line, and escalation goes on (whatever the gain per minute) while the
budget remains."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from graftkit.data import Table, load_data
from graftkit.errors import ConfigError, GraftkitError
from graftkit.evaluation.baselines import ClassicalBaseline
from graftkit.playbook.bounded import MIN_TRAINABLE_ROWS, bounded_training_rows, fit_trainable_to_budget
from graftkit.playbook.budget import Clock, estimate_trainable, format_seconds, parse_budget
from graftkit.playbook.domain import DEFAULT_PRETRAIN_STEPS, prepare_domain
from graftkit.playbook.leaderboard import choose, write_leaderboard
from graftkit.playbook.steps import Run
from graftkit.tracking import check_tracker, log_model_run

logger = logging.getLogger(__name__)

STEPS = ("finetune", "lora", "lp-ft", "full")  # the rungs a ladder can be built from
# The default ladder ends with lp-ft, not a plain full fine-tune: both train every group at the same cost, but
# starting from the probe's head (already fitted, its features cached) beat a fresh head in every table of
# bench/RESULTS.md — SST-2 0.805 vs 0.802, CIFAR-10 0.708 vs 0.614, FSDD 0.883 vs 0.850 (Kumar et al. 2022).
LADDER = ("finetune", "lora", "lp-ft")
FROM_PROBE_HEAD = ("the rung that fell short trained a fresh head, and on a few hundred examples a fresh head is "
                   "still under-trained after a few epochs (it lost to the probe in the Banking77, CIFAR-10 and FSDD "
                   "tables of bench/RESULTS.md) while lp-ft, which starts from the probe's head, beat it")
AUTO_CANDIDATES = 3  # without backbones=: the cheapest installed ones of the data's modality, this many at most
DEFAULT_MIN_GAIN_PER_MINUTE = 0.25  # validation accuracy points (0-100 scale) per minute of the step


@dataclass
class AutoResult:
    """What ``auto`` did. ``model``: the fitted pretrained ``Graft`` that is saved (the best pretrained candidate
    on validation); ``chosen``: the validation-best leaderboard row (the baseline's row when it wins, see
    ``baseline_wins`` / ``message``); ``rows``: the leaderboard; ``steps``: the step log."""

    model: object
    chosen: dict | None
    shipped: dict | None
    rows: list[dict]
    steps: list[dict]
    baseline: ClassicalBaseline
    baseline_wins: bool
    message: str | None
    budget: str
    budget_s: float
    seconds: float
    validation_source: str
    ranking: object = None
    output: str | None = None
    settings: dict = field(default_factory=dict)
    tracking: dict | None = None  # the MLflow run (track="mlflow"): run_id, model_uri, tracking_uri
    domain_shift: dict | None = None  # with target=: the shift measured and the domain rungs added (playbook/domain)
    leakage: dict | None = None  # a multi-input table: validation / test rows duplicating training rows (fusion.py)

    @property
    def leaderboard(self) -> list[dict]:
        return self.rows

    def to_dict(self) -> dict:
        return {"budget": self.budget, "budget_s": self.budget_s, "seconds": round(self.seconds, 3),
                "validation": self.validation_source, "chosen_step": None if self.chosen is None else self.chosen["step"],
                "saved_step": None if self.shipped is None else self.shipped["step"],
                "baseline_wins": self.baseline_wins, "message": self.message, "output": self.output,
                "settings": self.settings,
                "memory": "peak resident set size of the process when the step ended (resource.getrusage ru_maxrss)",
                "rows": self.rows, "steps": self.steps,
                "ranking": None if self.ranking is None else self.ranking.to_dict(), "domain_shift": self.domain_shift,
                "leakage": self.leakage}



def _check_options(backbones, ladder, epochs, probe_top, min_gain_per_minute, val_size) -> tuple[list, list]:
    if backbones is None:  # chosen from the installed models once the data's modality is known
        backbones = []
    elif isinstance(backbones, str):
        backbones = [backbones]
    else:
        backbones = list(dict.fromkeys(backbones))
        if not backbones:
            raise ConfigError("backbones must name at least one pretrained model, e.g. ['all-MiniLM-L6-v2'], or be "
                              "None to take the installed ones (backbones= / --backbones)")
    if not all(isinstance(b, str) and b.strip() for b in backbones):
        raise ConfigError("backbones must name at least one pretrained model, e.g. ['all-MiniLM-L6-v2'] "
                          "(backbones= / --backbones)")
    ladder = [ladder] if isinstance(ladder, str) else list(ladder or [])
    unknown = [s for s in ladder if s not in STEPS]
    if unknown:
        raise ConfigError(f"unknown escalation step {unknown[0]!r}; the ladder is built from {', '.join(STEPS)} "
                          "(ladder= / --ladder)")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1; got {epochs!r} (epochs= / --epochs)")
    if not isinstance(probe_top, int) or probe_top < 1:
        raise ConfigError(f"probe_top must be an integer >= 1; got {probe_top!r} (probe_top= / --probe-top)")
    if not isinstance(min_gain_per_minute, (int, float)) or not min_gain_per_minute >= 0:
        raise ConfigError(f"min_gain_per_minute must be a number >= 0; got {min_gain_per_minute!r} "
                          "(--min-gain-per-minute)")
    if not isinstance(val_size, (int, float)) or not 0 < val_size < 1:
        raise ConfigError(f"val_size must be a fraction between 0 and 1; got {val_size!r} (--val-size)")
    return backbones, ladder


def _installed_candidates(modality: str, limit: int) -> tuple[list[str], str]:
    """The ``limit`` cheapest installed backbones that read ``modality``, and the sentence saying so."""
    from graftkit.backbones.registry import installed_backbones

    found = installed_backbones(modality)
    if not found:
        raise ConfigError(f"no installed backbone reads {modality}; install one (`graftkit models` lists the packaged "
                          "ones and how to install them) or name one with --backbones (backbones=)")
    taken = found[:limit]
    note = (f"no backbones given: took the {len(taken)} cheapest installed {modality} model(s), "
            + ", ".join(f"{c['name']} ({c['bytes'] / 1e6:.0f} MB of weights)" for c in taken))
    if len(found) > limit:
        note += f"; left out (costlier): {', '.join(c['name'] for c in found[limit:])}"
    return [c["name"] for c in taken], note


def _load_like(data, roles: dict, data_options: dict) -> Table:
    """A validation / test table read with the training data's column roles."""
    if isinstance(data, Table):
        return data
    options = {k: v for k, v in data_options.items() if k not in ("text", "image", "audio", "label")}
    return load_data(data, **options, **roles)


def _order_by_rank(run: Run, backbones: list[str], seed: int, graft_options: dict):
    """``(backbones best first, ranking or None)``: LogME on the training split when there is more than one."""
    if len(backbones) < 2:
        run.log("rank", "skipped: one backbone, nothing to rank")
        return backbones, None
    from graftkit.selection.candidates import parse_candidates
    from graftkit.selection.rank import rank

    options = {k: graft_options[k] for k in ("batch_size", "cache_dir", "use_cache", "device", "extract_runtime",
                                             "progress")}  # the probes' runtime: they reuse the ranked features
    try:
        ranking = rank(run.train, backbones, seed=seed, scores=("logme",), rank_by="logme", **options)
    except ConfigError as exc:
        run.log("rank", f"failed, keeping the given order: {exc}")
        return backbones, None
    names = {parse_candidates([spec])[0].name: spec for spec in backbones}
    ordered = [names[row["candidate"]] for row in ranking.rows if row["candidate"] in names]
    ordered += [spec for spec in backbones if spec not in ordered]
    for row in ranking.rows:
        spec = names.get(row["candidate"])
        extraction = row["extraction"]
        if spec and extraction.get("embedded"):
            run.forward_s.setdefault(spec, extraction["seconds"] / extraction["embedded"])
    scores = ", ".join(f"{row['candidate']} {row['scores']['logme']:.4f}" for row in ranking.rows
                       if row["scores"].get("logme") is not None)
    run.log("rank", f"LogME on {ranking.data['rows']} training rows in {ranking.timings['total_s']:.1f}s: {scores}")
    return ordered, ranking


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _best_pretrained(run: Run) -> dict | None:
    return choose([row for row in run.rows if row["kind"] != "baseline"])


def _escalate(run: Run, spec: str, ladder, *, epochs, layers, min_gain, graft_options, baseline_row) -> None:
    """The trainable rungs on ``spec``, each only when its estimate fits the remaining budget and the previous
    rung's validation gain per minute reached ``min_gain`` (unless the baseline still leads on validation)."""
    from graftkit.strategies import strategy_names

    stopped, fresh_head_fell_short = None, False
    for strategy in ladder:
        best = _best_pretrained(run)
        baseline_ahead = best is None or baseline_row["validation"]["score"] > best["validation"]["score"]
        if strategy not in strategy_names():
            run.row("trainable", spec, strategy, "skipped", f"skipped: strategy {strategy!r} is not available in "
                    f"this installation (strategies: {', '.join(strategy_names())})")
            continue
        exempt = bool(stopped) and strategy == "lp-ft" and fresh_head_fell_short  # see FROM_PROBE_HEAD
        if stopped and not exempt:
            run.row("trainable", spec, strategy, "skipped", stopped)
            continue
        if exempt:
            run.log("escalation", f"lp-ft is tried although escalation stopped: {FROM_PROBE_HEAD}")
            stopped = None
        if best is not None and best["validation"]["score"] >= run.perfect_score:
            stopped = (f"skipped: {best['backbone']} / {best['strategy']} already reaches validation {run.metric} "
                       f"{run.task.best_possible:.3f}; nothing left to gain")
            run.row("trainable", spec, strategy, "skipped", stopped)
            continue
        estimate, basis = estimate_trainable(strategy, forward_s_per_row=run.forward_s[spec],
                                             train_rows=len(run.train), val_rows=len(run.val), epochs=epochs,
                                             correction=run.correction, feature_rows=run.uncached_rows(run.train))
        fits, note = run.budget_note(estimate)
        train, rung_epochs, cut = None, epochs, None
        if not fits:
            bounded = fit_trainable_to_budget(run, spec, strategy, epochs)
            if bounded is None:
                run.row("trainable", spec, strategy, "skipped", f"skipped: would not fit the budget ({note}; {basis}),"
                        f" not even 1 epoch on {min(MIN_TRAINABLE_ROWS, len(run.train))} rows",
                        estimated_s=round(estimate, 1))
                continue
            train, rung_epochs, estimate, basis, cut = bounded
            cut = f"{cut}; on every row it would not ({note})"
            note = f"estimated {estimate:.0f}s as cut"
            run.log("budget", f"{strategy}: {cut}")
        if baseline_ahead:
            reason = ("escalated: the classical baseline beats every pretrained candidate on validation, so "
                      "escalation goes on while the budget lasts")
        else:
            reason = f"escalated: fits the budget ({note})"
        if cut:
            reason = f"{reason}; {cut}"
        if exempt:
            reason = f"{reason}; tried although escalation had stopped: {FROM_PROBE_HEAD}"
        row = run.trainable(spec, strategy, reason, estimate, basis, graft_options, rung_epochs, layers, train=train)
        if row["status"] != "ran":
            continue
        before = best["validation"]["score"] if best else 0.0
        gain = 100.0 * (row["validation"]["score"] - before) / max(row["seconds"] / 60.0, 1e-9)
        row["gain_per_minute"] = round(gain, 4)
        now_best = _best_pretrained(run)
        if gain < min_gain:
            if baseline_row["validation"]["score"] > now_best["validation"]["score"]:
                run.log("escalation", f"{strategy} gained {gain:+.2f} {run.metric} points per minute on validation, below "
                        f"{min_gain:g}, but the classical baseline still leads on validation: escalation goes on")
            else:
                stopped = (f"skipped: escalation stopped, {strategy} gained {gain:+.2f} validation {run.metric} points "
                           f"per minute, below the threshold {min_gain:g}")
                fresh_head_fell_short = strategy != "lp-ft"
        else:
            run.log("escalation", f"{strategy} gained {gain:+.2f} validation {run.metric} points per minute "
                    f"(threshold {min_gain:g})")


def auto(data, *, backbones=None, budget="20m", validation=None, test=None, seed: int = 0, output=None,
         overwrite: bool = False, val_size: float = 0.2, ladder=LADDER, epochs: int = 3, finetune_layers: int = 2,
         probe_top: int = 2, min_gain_per_minute: float = DEFAULT_MIN_GAIN_PER_MINUTE, batch_size: int = 32,
         cache_dir=None, use_cache: bool = True, device: str = "cpu", extract_runtime: str = "auto",
         progress: bool = False, calibrate: bool = True, n_bootstrap: int = 1000, refit: bool = True,
         task: str | None = None, task_options: dict | None = None, track: str | None = None, label_descriptions=None,
         template: str | None = None, target=None, pretrain_steps: int = DEFAULT_PRETRAIN_STEPS, pretrain_output=None,
         spent: float = 0.0, **data_options) -> AutoResult:
    """Pick and fit a model for labelled ``data`` within ``budget`` (``"20m"``, ``"90s"``, ``"1h"``).

    One seeded, stratified ``val_size`` split of ``data`` is the validation set (or ``validation`` when given);
    every candidate is fitted on the same training rows and scored on the same validation rows, and the choice is
    by the task's primary validation metric (accuracy; micro-F1 for multi-label; R² for regression; ``task`` /
    ``task_options`` as ``Graft`` takes them, inferred by default). ``test`` (optional) is scored for the leaderboard only after every decision.
    ``backbones``: packaged names, local directories or Hub ids (None: the ``AUTO_CANDIDATES`` cheapest installed
    models that read the data's modality, as ``graftkit models`` lists them; the step log says which); with more than one, LogME ranks them on the
    training split and the top ``probe_top`` get a linear probe. The best probed backbone then climbs ``ladder``
    (finetune of the top ``finetune_layers`` groups -> lora, when installed -> lp-ft, ``epochs`` each; ``full`` on
    request): a rung runs when its estimated time fits the remaining budget, and escalation stops once a rung
    gained less than ``min_gain_per_minute`` validation accuracy points per minute, unless the classical baseline
    still beats every pretrained candidate on validation; a stop caused by a fresh-head rung still lets ``lp-ft``
    run. Zero-shot runs first (rung 0) on the top backbone when ``label_descriptions`` are given or the class names
    are words (``strategies/descriptions.zero_shot_rung``). ``refit``: when the saved model is a linear probe and the validation rows came from ``data``, refit it
    on all of ``data`` after the choice (cached features: the head's cost) if the budget allows. ``output``: save
    the best pretrained model there (atomically; ``overwrite`` to replace a model) with ``leaderboard.json`` and
    ``leaderboard.md``. ``target``: unlabelled target-domain inputs; the shift to them is measured on the first probed
    backbone and, when large, DANN and (text) continued pretraining for at most ``pretrain_steps`` steps into
    ``pretrain_output`` (default: OUTPUT-tapt) are added as rungs (``playbook/domain.py``). ``spent``: seconds of the
    budget already gone when the call starts (the ``graftkit`` command passes its process's start-up, so the budget is
    the command's wall time). ``extract_runtime``: what embeds frozen features, as ``Graft`` takes it (ranking and
    the probes share it, so the probes reuse the ranked features).

    >>> result = graftkit.auto("train.csv", backbones=["all-MiniLM-L6-v2"], budget="10m", output="runs/auto")
    >>> result.chosen["strategy"], result.message
    """
    from graftkit.features.runtime import check_runtime
    from graftkit.graft import check_device
    from graftkit.playbook.fusion import check_auto_destination
    from graftkit.tasks import infer_task

    if task is not None:
        from graftkit.tasks import task_class

        task_class(task)
    budget_s = parse_budget(budget)
    if check_tracker(track) and output is None:
        raise ConfigError("track= logs the saved model; give output= (the CLI's -o DIR) too")
    clock = Clock(budget_s, spent=spent)
    backbones, ladder = _check_options(backbones, ladder, epochs, probe_top, min_gain_per_minute, val_size)
    if output is not None:
        output = Path(output).expanduser()
        check_auto_destination(output, overwrite)  # fail before the work, not after
    check_device(device)
    check_runtime(extract_runtime)
    table = data if isinstance(data, Table) else load_data(data, **data_options)
    task = infer_task(table, task, **(task_options or {}))
    logger.info("auto: %s", task.reason or task.kind)
    domain = prepare_domain(target, task, table, output=output, overwrite=overwrite, pretrain_output=pretrain_output,
                            pretrain_steps=pretrain_steps, seed=seed)  # None without a target
    graft_options = {"seed": seed, "batch_size": batch_size, "cache_dir": cache_dir, "use_cache": use_cache,
                     "device": device, "extract_runtime": extract_runtime, "progress": progress,
                     "calibrate": calibrate, "task": task.kind,
                     "task_options": task_options or {}}
    if task.generative:  # its ladder (zero-shot, decoder-only, lora) has no probe or classical rung to stand on
        from graftkit.playbook.generative import auto_generative

        return auto_generative(table, task, backbones=backbones, clock=clock, budget=budget, budget_s=budget_s,
                               validation=validation, test=test, seed=seed, output=output, overwrite=overwrite,
                               val_size=val_size, ladder=ladder, epochs=epochs, finetune_layers=finetune_layers,
                               min_gain_per_minute=min_gain_per_minute, graft_options=graft_options,
                               n_bootstrap=n_bootstrap, track=track,
                               load_like=lambda data, roles: _load_like(data, roles, data_options))
    if table.roles is not None:  # several inputs per row: the fusion playbook (playbook/fusion.py)
        from graftkit.playbook.fusion import auto_fusion, is_multi_input

        if is_multi_input(table):
            return auto_fusion(table, task, backbones=backbones, clock=clock, budget=budget, budget_s=budget_s,
                               validation=validation, test=test, seed=seed, output=output, overwrite=overwrite,
                               val_size=val_size, ladder=ladder, epochs=epochs, probe_top=probe_top,
                               min_gain_per_minute=min_gain_per_minute, graft_options=graft_options,
                               n_bootstrap=n_bootstrap, refit=refit, track=track, data_options=data_options)
    chose_backbones = None
    if not backbones:
        backbones, chose_backbones = _installed_candidates(table.modality, AUTO_CANDIDATES)
        logger.info("auto: %s", chose_backbones)
    roles = {table.modality: table.input_column, "label": table.label_column}
    if validation is None:
        train, val = task.split(table, test_size=val_size, seed=seed)
        validation_source = f"a {val_size:g} share of the data split as the {task.kind} task splits, seed {seed}"
    else:
        train, val = table, _load_like(validation, roles, data_options)
        validation_source = f"the given validation data ({len(val)} rows)"
    test_table = None if test is None else _load_like(test, roles, data_options)
    settings = {"backbones": backbones, "ladder": ladder, "epochs": epochs, "finetune_layers": finetune_layers,
                "probe_top": probe_top, "min_gain_per_minute": min_gain_per_minute, "seed": seed,
                "val_size": None if validation is not None else val_size, "train_rows": len(train),
                "validation_rows": len(val), "test_rows": None if test_table is None else len(test_table),
                "task": task.to_dict(), "metric": task.primary_metric, "second_metric": task.headline[1],
                "use_cache": use_cache}
    run = Run(clock, train, val, test_table, task, settings)  # encodes every split's labels before the work
    if chose_backbones:
        run.log("backbones", chose_backbones)
    run.log("split", f"{len(train)} training rows, {len(val)} validation rows ({validation_source})"
            + (f", {len(test_table)} test rows scored after every decision" if test_table is not None else ""))

    baseline = run.baseline(table.modality, seed)
    baseline_row = run.rows[-1]
    ordered, ranking = _order_by_rank(run, backbones, seed, graft_options)
    from graftkit.strategies.descriptions import zero_shot_rung

    rung_zero = zero_shot_rung(task, label_descriptions)  # descriptions, or class names that are words
    if rung_zero:
        run.zero_shot(ordered[0], rung_zero, graft_options, label_descriptions, template)
    for position, spec in enumerate(ordered, start=1):
        if position > probe_top:
            run.row("probe", spec, "linear-probe", "skipped",
                    f"skipped: ranked {position} of {len(ordered)} by LogME; only the top {probe_top} are probed")
            continue
        reason = (f"probed: ranked {position} of {len(ordered)} by LogME" if ranking is not None
                  else "probed: the only backbone")
        probed = [row for row in run.rows if row["kind"] == "probe" and row["status"] == "ran"]
        if probed and spec in run.forward_s:  # not the first: it must fit what is left
            estimate = run.forward_s[spec] * (len(val) + (len(test_table) if test_table is not None else 0)) \
                + max(row["seconds"] for row in probed) * 0.5
            fits, note = run.budget_note(estimate)
            if not fits:
                run.row("probe", spec, "linear-probe", "skipped", f"skipped: would not fit the budget ({note})",
                        estimated_s=round(estimate, 1))
                continue
        elif clock.remaining() <= 0 and probed:
            run.row("probe", spec, "linear-probe", "skipped", "skipped: the budget is spent")
            continue
        if probed:
            run.probe(spec, reason, graft_options)
        else:  # the first probe always runs: bounded by the budget through its training rows
            try:
                rows, note, model = bounded_training_rows(run, spec, graft_options)
            except GraftkitError:  # the backbone cannot read the data: the probe's own row records why
                rows, note, model = None, None, None
            run.probe(spec, f"{reason}; {note}" if note else reason, graft_options, train=rows, model=model)
            if note:
                run.first_probe_rows = rows

    if domain is not None:
        domain.measure(run, graft_options)
    best_probe = choose([row for row in run.rows if row["kind"] == "probe"])
    if best_probe is None:
        for strategy in ladder:
            run.row("trainable", "-", strategy, "skipped", "skipped: no linear probe succeeded, nothing to escalate")
    else:
        run.log("escalation", f"on {best_probe['backbone']}, the best linear probe on validation "
                f"({run.metric} {best_probe['validation']['score']:.4f})")
        _escalate(run, best_probe["backbone"], ladder, epochs=epochs, layers=finetune_layers,
                  min_gain=min_gain_per_minute, graft_options=graft_options, baseline_row=baseline_row)
    if domain is not None:
        domain.escalate(run, best_probe, epochs=epochs, layers=finetune_layers, graft_options=graft_options)

    # -- every decision is made: choose by validation, then score the test set ----------------------------------
    chosen, shipped = choose(run.rows), _best_pretrained(run)
    message = None
    baseline_wins = chosen is baseline_row
    if chosen is not None:
        chosen["chosen"] = True
        others = [r for r in run.rows if r is not chosen and r["status"] == "ran"]
        runner = max(others, key=lambda r: r["validation"]["score"], default=None)
        second = run.task.headline[1]
        chosen["chosen_reason"] = (f"best validation {run.metric} {chosen['validation']['score']:.4f} ({second} "
                                   f"{_number(chosen['validation'].get(second))})" + (
                                       f"; next best {runner['backbone']} / {runner['strategy']} "
                                       f"{runner['validation']['score']:.4f}" if runner else ""))
    if baseline_wins:
        if shipped is not None:
            gap = 100 * (baseline_row["validation"]["score"] - shipped["validation"]["score"])
            verdict = "beats" if gap > 0 else "is as good as (a tie, and cheaper than)"
            message = (f"the classical baseline {verdict} every pretrained candidate on validation: "
                       f"{baseline_row['strategy']} {run.metric} {baseline_row['validation']['score']:.4f} vs the best "
                       f"pretrained, {shipped['backbone']} / {shipped['strategy']}, "
                       f"{shipped['validation']['score']:.4f} ({gap:.1f} points behind); the saved model is that "
                       f"pretrained candidate and is {'worse than' if gap > 0 else 'no better than'} the baseline: "
                       "prefer the baseline, or give fine-tuning more budget")
        else:
            message = ("the classical baseline beats every pretrained candidate on validation: no pretrained "
                       "candidate could be fitted")
        logger.warning("auto: %s", message)
    if shipped is not None and shipped["strategy"] == "linear-probe" and validation is None and refit:
        run.refit_probe(shipped, table, graft_options)
    if test_table is not None:
        run.score_test(baseline, n_bootstrap, seed)
        run.log("test", f"scored {len(test_table)} test rows for every fitted row (after all decisions)")
    result = AutoResult(model=run.models.get(shipped["step"]) if shipped else None, chosen=chosen, shipped=shipped,
                        rows=run.rows, steps=run.steps, baseline=baseline, baseline_wins=baseline_wins,
                        message=message, budget=budget if isinstance(budget, str) else format_seconds(budget_s),
                        budget_s=budget_s, seconds=clock.elapsed, validation_source=validation_source,
                        ranking=ranking, settings=settings, domain_shift=None if domain is None else domain.record)
    if output is not None:
        if result.model is None:
            raise ConfigError(f"no pretrained candidate was fitted, so there is no model to save in {str(output)!r}; "
                              "see the reasons: " + "; ".join(f"{r['backbone']}: {r['reason']}" for r in run.rows
                                                              if r["kind"] == "probe"))
        result.model.save(output, overwrite=overwrite)
        result.output = str(output)
        run.log("save", f"saved step {shipped['step']} to {output} with leaderboard.json and leaderboard.md")
        result.seconds = clock.elapsed
        write_leaderboard(output, result)
        if track:
            params = {"budget": result.budget, "backbones": ",".join(map(str, backbones)), "seed": seed,
                      "chosen_step": result.to_dict()["chosen_step"], "saved_step": result.to_dict()["saved_step"]}
            result.tracking = log_model_run(output, params=params, run_name=f"auto {output.name}",
                                            artifacts=[output / "leaderboard.json", output / "leaderboard.md"])
    return result
