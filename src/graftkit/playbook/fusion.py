"""``graftkit.auto`` on a multi-input table (text / image / audio columns plus numeric and categorical ones; issue
12): the rungs in cost order, each a leaderboard row with its reason, on one train / validation split —

1. the tabular columns alone, gradient-boosted trees (a ``FusionModel`` that reads no media column: saveable; a
   reference row like the baseline, so on a validation tie it wins over every rung after it);
2. the classical baseline: TF-IDF + SVD of each text column and the tabular columns, same trees (``fusion/baseline``);
3. frozen fusion: each media column embedded by its pretrained backbone, fused with the tabular columns, the GBDT
   head — on the top ``probe_top`` backbones by LogME on the fused features when several are given; the first one
   always runs, timed on a sample first and fitted on the most training rows the budget holds (``bounded.py``),
   and the others and the linear head see the same rows;
4. the same features (from the feature cache) with the task's linear head;
5. the two-stage recipe: the text backbone LoRA-tuned on the target, then its embeddings into the trees — only with
   text columns, ``lora`` in the ladder, its estimate fitting what is left of the budget, under a ``Deadline``.

Before the rungs, the validation and test rows are checked for leakage against the training rows (every media
column duplicated, ``fusion/leakage.py``: the hash and edited-copy detectors, no backbone loaded yet); the step
log and ``AutoResult.leakage`` keep it. The choice is by the task's primary metric on validation (then the simpler,
earlier rung); the test rows are scored after every decision. The saved model is the best fusion artifact (rungs
1, 3-5); when the classical baseline (rung 2) wins, the result says so in one line, as the single-input playbook
does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from graftkit.data import Table, load_data
from graftkit.data.roles import Roles
from graftkit.errors import ConfigError, GraftkitError
from graftkit.fusion.assign import assign_backbones, parse_entry
from graftkit.fusion.baseline import ClassicalFusion
from graftkit.fusion.cv import fusion_params
from graftkit.fusion.encoders import DEFAULT_BACKBONES
from graftkit.fusion.model import FusionModel, check_destination, is_fusion_model
from graftkit.playbook.bounded import bounded_fusion_rows
from graftkit.playbook.budget import estimate_trainable, format_seconds, peak_rss_mib
from graftkit.playbook.leaderboard import bootstrap_std, choose, write_leaderboard
from graftkit.playbook.steps import Run

logger = logging.getLogger(__name__)

HEAD_FIT_SHARE = 0.5  # a head on cached features: this share of the GBDT rung's time is read as the head's cost


def is_multi_input(table: Table) -> bool:
    """The tables this playbook is for: roles with more than one input column, or with no media column."""
    return table.roles is not None and (len(table.roles.columns) > 1 or not table.roles.media)


def check_auto_destination(path, overwrite: bool) -> None:
    """``auto``'s output before the data is read: new, or a graftkit model or fusion model (with ``overwrite``)."""
    from graftkit.artifacts import check_destination as check_model

    (check_destination if is_fusion_model(path) else check_model)(Path(path), overwrite)


def _load_like(data, table: Table, data_options: dict) -> Table:
    if isinstance(data, Table):
        return data
    options = {k: data_options[k] for k in ("format", "encoding", "drop_missing") if data_options.get(k) is not None}
    return load_data(data, known_columns={"roles": table.roles.to_dict(), "label": table.label_column},
                     label=table.label_column, **options)


def _tabular_view(table: Table) -> Table:
    roles = Roles(numeric=table.roles.numeric, categorical=table.roles.categorical)
    return replace(table, roles=roles, modality="tabular", input_column=roles.columns[0], explanation=[])


class FusionRun(Run):
    """``Run`` (splits, clock, rows, step log) with the fusion rungs."""

    def __init__(self, clock, train, val, test, task, settings):
        super().__init__(clock, train, val, test, task, settings)
        self.frozen_train = train  # the rows the frozen rungs fit on: fewer when the budget cut the first one
        self.fitted_on = {}        # step -> the training rows that row's model saw

    def fit_fusion(self, kind: str, label: str, strategy: str, reason: str, params: dict, *, tabular_only=False,
                   estimate=None, basis=None, train=None, encoders=None,
                   model=None) -> tuple[dict | None, FusionModel | None]:
        """A fusion rung fitted on ``train`` (default: every training row) and scored on validation; ``model``: an
        unfitted ``FusionModel`` to fit (default: one of ``params``), ``encoders`` the ones built for it."""
        started = time.perf_counter()
        rows = self.train if train is None else train
        train, val = (_tabular_view(rows), _tabular_view(self.val)) if tabular_only else (rows, self.val)
        try:
            model = (model or FusionModel(**params)).fit(train, encoders=encoders)
            clock = time.perf_counter()
            outputs = model.outputs(val)
            val_s = time.perf_counter() - clock
            validation = self.metrics(self.y_val, outputs, model.calibration_)
        except GraftkitError as exc:
            self.row(kind, label, strategy, "failed", f"{reason}; failed: {exc}",
                     seconds=round(time.perf_counter() - started, 3))
            return None, None
        seconds = round(time.perf_counter() - started, 3)
        extra = {}
        if estimate is not None:
            reason = f"{reason} ({basis}: estimated {estimate:.0f}s)"
            extra["estimated_s"] = round(estimate, 1)
        stopped = [e.graft.training_.get("stopped") for e in dict.fromkeys(model.featurizer_.encoders.values())
                   if e.kind == "tuned" and (e.graft.training_ or {}).get("stopped")]
        if stopped:
            reason += f"; {stopped[0]}"
        row = self.row(kind, label, strategy, "ran", reason, validation=validation, seconds=seconds,
                       peak_rss_mib=peak_rss_mib(), train_rows=len(train), head=params.get("head"),
                       tabular_only=tabular_only,
                       encoder=params.get("encoder", "frozen"), backbones=dict(params.get("backbones") or {}),
                       timings=model.timings_, stopped_at_budget=bool(stopped), **extra)
        if not tabular_only:
            self.forward_s.setdefault(label, val_s / max(len(val), 1))  # a fresh pass: validation rows are new
        self.models[row["step"]] = model
        self.fitted_on[row["step"]] = rows
        return row, model

    def classical(self, reason: str, seed: int):
        started = time.perf_counter()
        try:
            base = ClassicalFusion(self.task, seed=seed).fit(self.train)
            validation = self.metrics(self.y_val, self.task.outputs(base.raw_outputs(self.val), None))
        except GraftkitError as exc:
            self.row("baseline", "classical baseline", "tfidf-svd + tabular gbdt", "failed", f"{reason}; failed: {exc}",
                     seconds=round(time.perf_counter() - started, 3))
            return None
        row = self.row("baseline", "classical baseline", "tfidf-svd + tabular gbdt", "ran", reason,
                       validation=validation, seconds=round(time.perf_counter() - started, 3),
                       peak_rss_mib=peak_rss_mib())
        self.models[row["step"]] = base
        return base

    def outputs_of(self, row: dict, table: Table):
        model = self.models[row["step"]]
        if not isinstance(model, FusionModel):  # the classical baseline
            return self.task.outputs(model.raw_outputs(table), None), None
        view = _tabular_view(table) if row["tabular_only"] else table
        return model.outputs(view), model.calibration_

    def score_fusion_test(self, n_bootstrap: int, seed: int) -> None:
        for row in self.rows:
            if row["status"] == "ran":
                outputs, calibration = self.outputs_of(row, self.test)
                metrics = self.metrics(self.y_test, outputs, calibration)
                metrics["score_std"] = bootstrap_std(self.task, self.y_test, outputs, calibration, n_bootstrap, seed)
                row["test"] = metrics


def _candidates(backbones, table) -> tuple[list[str], list[str], str | None]:
    """``(candidates, pinned, note)``: bare specs are candidates for the modalities they read; ``COLUMN=SPEC`` /
    ``MODALITY=SPEC`` pin a column's backbone for every rung. No candidates: the fusion defaults."""
    pinned = [b for b in backbones if parse_entry(b)[0] is not None]
    candidates = [b for b in backbones if parse_entry(b)[0] is None]
    note = None
    if not candidates:
        pinned_map = assign_backbones(pinned, table.roles)
        defaults = {m: DEFAULT_BACKBONES.get(m) for c, m in table.roles.media if c not in pinned_map
                    and m not in pinned_map}
        if any(v is None for v in defaults.values()):
            missing = next(m for m, v in defaults.items() if v is None)
            raise ConfigError(f"no default backbone reads {missing}; name one for the {missing} columns (--backbones "
                              f"{missing}=SPEC)")
        note = ("no candidate backbones given: the fusion defaults, "
                + ", ".join(f"{m} {s}" for m, s in defaults.items()) if defaults else None)
    return candidates, pinned, note


def _label(backbones: dict, roles) -> str:
    """The backbones a fusion row embeds with, as the leaderboard names them (a directory by its name)."""
    specs = [backbones.get(c) or backbones.get(m) or DEFAULT_BACKBONES.get(m) or "?" for c, m in roles.media]
    return " + ".join(dict.fromkeys(Path(s).name if Path(s).exists() else s for s in specs))


def _order(run: FusionRun, candidates, pinned, graft_options: dict, seed: int) -> list[str]:
    if len(candidates) < 2:
        return candidates
    from graftkit.selection.rank import rank

    options = {k: graft_options[k] for k in ("batch_size", "cache_dir", "use_cache", "device", "progress")}
    try:
        ranking = rank(run.train, candidates + pinned, seed=seed, scores=("logme",), rank_by="logme", **options)
    except GraftkitError as exc:
        run.log("rank", f"failed, keeping the given order: {exc}")
        return candidates
    from graftkit.selection.candidates import parse_candidates

    names = {parse_candidates([spec])[0].name: spec for spec in candidates}
    ordered = [names[row["candidate"]] for row in ranking.rows if row["candidate"] in names]
    run.log("rank", f"LogME on the fused features of {ranking.data['rows']} training rows: " + ", ".join(
        f"{row['candidate']} {row['scores']['logme']:.4f}" for row in ranking.rows if row["scores"].get("logme")
        is not None))
    return ordered + [c for c in candidates if c not in ordered]


def _check_leakage(run: FusionRun) -> dict | None:
    """The validation and test rows that duplicate a training row in every media column (``fusion/leakage.py``,
    the hash and edited-copy detectors: no backbone is loaded yet), each a step of the log; None without media."""
    from graftkit.fusion.leakage import multi_input_leakage

    if not run.train.roles.media:
        run.log("leakage", "not checked: the table has no text / image / audio column to compare")
        return None
    record = {}
    for name, held, effect in (("validation", run.val, "the choice between rungs reads optimistic scores"),
                               ("test", run.test, "the test figures are optimistic")):
        if held is None:
            continue
        started = time.perf_counter()
        found = multi_input_leakage(run.train, held)
        record[name] = found
        line = (f"{name}: {found['leaked']} of {len(held)} rows duplicate a training row in every media column "
                f"({found['exact']} exact, {found['text']} edited text; {found['method']}) in "
                f"{time.perf_counter() - started:.1f}s")
        if found["leaked"]:
            line += f"; {effect}: de-duplicate the data"
            logger.warning("auto: leakage: %s", line)
        run.log("leakage", line)
    return record


def _lora(run: FusionRun, best: dict, params: dict, *, epochs: int, ladder, min_gain: float) -> None:
    label = best["backbone"]
    if "lora" not in ladder:
        run.row("trainable", label, "lora + gbdt", "skipped", "skipped: lora is not in the ladder (ladder= / --ladder)")
        return
    if not [c for c, m in run.train.roles.media if m == "text"]:
        run.row("trainable", label, "lora + gbdt", "skipped", "skipped: no text column to tune (the two-stage "
                "recipe LoRA-tunes the text backbone)")
        return
    if best["validation"]["score"] >= run.perfect_score:
        run.row("trainable", label, "lora + gbdt", "skipped", f"skipped: {label} / {best['strategy']} already "
                f"reaches validation {run.metric} {run.task.best_possible:.3f}; nothing left to gain")
        return
    forward = run.forward_s[label]
    tuned_rows = int(len(run.train) * 0.9)
    training, basis = estimate_trainable("lora", forward_s_per_row=forward, train_rows=tuned_rows,
                                         val_rows=len(run.train) - tuned_rows, epochs=epochs,
                                         correction=run.correction)
    embed = forward * (len(run.train) + len(run.val) + (len(run.test) if run.test is not None else 0))
    estimate = training + embed + best["timings"]["head_s"]
    basis += f" + {embed:.0f}s embedding every row with the tuned encoder (no cache) + the trees"
    fits, note = run.budget_note(estimate)
    if not fits:
        run.row("trainable", label, "lora + gbdt", "skipped", f"skipped: would not fit the budget ({note}; {basis})",
                estimated_s=round(estimate, 1))
        return
    from graftkit.training.callbacks import Deadline

    left = run.clock.remaining(run.reserve()) - embed - best["timings"]["head_s"]
    deadline = Deadline(time.monotonic() + left, eval_s=forward * (len(run.train) - tuned_rows))
    tuned = {**params, "encoder": "lora", "tune_params": {"epochs": epochs, "callbacks": [deadline]}}
    row, _ = run.fit_fusion("trainable", label, "lora + gbdt", f"escalated: fits the budget ({note})", tuned,
                            estimate=estimate, basis=basis)
    if row is not None:
        gain = 100.0 * (row["validation"]["score"] - best["validation"]["score"]) / max(row["seconds"] / 60.0, 1e-9)
        row["gain_per_minute"] = round(gain, 4)
        run.log("escalation", f"lora gained {gain:+.2f} validation {run.metric} points per minute over the frozen "
                f"fusion (threshold {min_gain:g}" + ("; below it" if gain < min_gain else "") + ")")


def auto_fusion(table, task, *, backbones, clock, budget, budget_s, validation, test, seed, output, overwrite,
                val_size, ladder, epochs, probe_top, min_gain_per_minute, graft_options, n_bootstrap, refit,
                track, data_options):
    """``auto``'s run for a multi-input table (``core.auto`` hands it over once the table is read)."""
    from graftkit.playbook.core import AutoResult

    if output is not None:
        check_destination(Path(output), overwrite)  # a fusion model is what will be written there
    candidates, pinned, defaults_note = _candidates(list(backbones or []), table)
    if validation is None:
        train, val = task.split(table, test_size=val_size, seed=seed)
        validation_source = f"a {val_size:g} share of the data split as the {task.kind} task splits, seed {seed}"
    else:
        train, val = table, _load_like(validation, table, data_options)
        validation_source = f"the given validation data ({len(val)} rows)"
    test_table = None if test is None else _load_like(test, table, data_options)
    settings = {"inputs": table.roles.to_dict(), "backbones": candidates + pinned, "ladder": list(ladder),
                "epochs": epochs, "probe_top": probe_top, "min_gain_per_minute": min_gain_per_minute, "seed": seed,
                "val_size": None if validation is not None else val_size, "train_rows": len(train),
                "validation_rows": len(val), "test_rows": None if test_table is None else len(test_table),
                "task": task.to_dict(), "metric": task.primary_metric, "second_metric": task.headline[1],
                "use_cache": graft_options["use_cache"]}
    run = FusionRun(clock, train, val, test_table, task, settings)
    run.log("inputs", f"a multi-input table: {table.roles.describe()}; the fusion playbook (tabular trees, the "
            "TF-IDF baseline, frozen fusion, the two-stage LoRA recipe)")
    if defaults_note:
        run.log("backbones", defaults_note)
    run.log("split", f"{len(train)} training rows, {len(val)} validation rows ({validation_source})"
            + (f", {len(test_table)} test rows scored after every decision" if test_table is not None else ""))
    leakage = _check_leakage(run)
    common = {"seed": seed, "batch_size": graft_options["batch_size"], "cache_dir": graft_options["cache_dir"],
              "use_cache": graft_options["use_cache"], "device": graft_options["device"],
              "progress": graft_options["progress"], "task": task.kind, "task_options": graft_options["task_options"],
              "calibration_folds": 3 if graft_options["calibrate"] else 0}
    roles = table.roles
    texts = [c for c, m in roles.media if m == "text"]
    # 1-2: the references that read no pretrained model
    if roles.tabular:
        run.fit_fusion("baseline", "tabular columns", "gbdt", f"always run: the tabular columns alone "
                       f"({', '.join(roles.tabular)}), gradient-boosted trees", common, tabular_only=True)
    else:
        run.row("baseline", "tabular columns", "gbdt", "skipped", "skipped: the table has no tabular column")
    if texts:
        unread = [c for c, m in roles.media if m != "text"]
        run.classical("always run: the classical reference (TF-IDF 1-2-grams + SVD of " + ", ".join(texts)
                      + (", with the tabular columns" if roles.tabular else "") + ", gradient-boosted trees"
                      + (f"; {', '.join(unread)} not read: TF-IDF reads text" if unread else "") + ")", seed)
    else:
        run.row("baseline", "classical baseline", "tfidf-svd + tabular gbdt", "skipped",
                "skipped: no text column for TF-IDF to read" + ("; the tabular trees (step 1) are the classical "
                                                                 "reference" if roles.tabular else ""))
    # 3-4: frozen fusion on the top candidates, then the linear head on the best one's cached features
    ordered = _order(run, candidates, pinned, graft_options, seed) or [None]
    for position, spec in enumerate(ordered, start=1):
        params = {**common, "backbones": assign_backbones(([spec] if spec else []) + pinned, roles), "head": "gbdt"}
        label = _label(params["backbones"], roles)
        if position > probe_top:
            run.row("fusion", label, "frozen + gbdt", "skipped", f"skipped: ranked {position} of {len(ordered)} by "
                    f"LogME on the fused features; only the top {probe_top} are fitted")
            continue
        reason = (f"ranked {position} of {len(ordered)} by LogME on the fused features" if len(ordered) > 1
                  else "the pretrained encoders, frozen")
        fitted = [r for r in run.rows if r["kind"] == "fusion" and r["status"] == "ran"]
        if fitted:
            first = fitted[0]
            estimate = first["seconds"]
            fits, note = run.budget_note(estimate)
            if not fits:
                run.row("fusion", label, "frozen + gbdt", "skipped", f"skipped: would not fit the budget ({note}, "
                        f"as long as step {first['step']})", estimated_s=round(estimate, 1))
                continue
            run.fit_fusion("fusion", label, "frozen + gbdt", f"fitted: {reason}", params, train=run.frozen_train)
            continue
        # the first always runs: timed on a sample, then fitted on the training rows the budget holds
        model = FusionModel(**params)
        rows, cut, encoders = bounded_fusion_rows(run, model, label)
        run.frozen_train = rows
        run.fit_fusion("fusion", label, "frozen + gbdt", f"always run: {reason}" + (f"; {cut}" if cut else ""),
                       params, train=rows, encoders=encoders, model=model)
    best = choose([r for r in run.rows if r["kind"] == "fusion"])
    if best is None:
        run.row("fusion", "-", "frozen + linear", "skipped", "skipped: no frozen fusion was fitted")
        run.row("trainable", "-", "lora + gbdt", "skipped", "skipped: no frozen fusion was fitted, nothing to tune")
    else:
        params = {**common, "backbones": best["backbones"]}
        estimate = best["seconds"] * HEAD_FIT_SHARE
        fits, note = run.budget_note(estimate)
        if fits:
            run.fit_fusion("fusion", best["backbone"], "frozen + linear", "the same fused features (feature cache) with "
                           "the task's linear head", {**params, "head": "linear"}, train=run.fitted_on[best["step"]])
        else:
            run.row("fusion", best["backbone"], "frozen + linear", "skipped", f"skipped: would not fit the budget "
                    f"({note})", estimated_s=round(estimate, 1))
        _lora(run, best, {**params, "head": "gbdt"}, epochs=epochs, ladder=ladder, min_gain=min_gain_per_minute)

    # -- every decision is made: choose by validation, then score the test set ----------------------------------
    chosen = choose(run.rows)
    shipped = choose([r for r in run.rows if isinstance(run.models.get(r["step"]), FusionModel)])
    baseline_row = next((r for r in run.rows if r["strategy"] == "tfidf-svd + tabular gbdt" and r["status"] == "ran"),
                        None)
    message = None
    if chosen is not None:
        chosen["chosen"] = True
        runner = max((r for r in run.rows if r is not chosen and r["status"] == "ran"),
                     key=lambda r: r["validation"]["score"], default=None)
        chosen["chosen_reason"] = (f"best validation {run.metric} {chosen['validation']['score']:.4f}" + (
            f"; next best {runner['backbone']} / {runner['strategy']} {runner['validation']['score']:.4f}"
            if runner else ""))
    if chosen is not None and chosen is baseline_row:
        tie = shipped is not None and shipped["validation"]["score"] == baseline_row["validation"]["score"]
        message = (f"the classical baseline {'is as good as (a tie, and cheaper than)' if tie else 'beats'} every "
                   f"fusion model on validation: {baseline_row['strategy']} {run.metric} "
                   f"{baseline_row['validation']['score']:.4f}" + (
                       f" vs the best saveable, {shipped['backbone']} / {shipped['strategy']}, "
                       f"{shipped['validation']['score']:.4f}; the saved model is that one: prefer the baseline, or "
                       "give the encoders more budget" if shipped else "; no fusion model could be fitted"))
        logger.warning("auto: %s", message)
    elif chosen is not None and chosen.get("tabular_only"):
        message = ("the tabular columns alone beat every fusion of the media columns on validation: the saved model "
                   "reads only " + ", ".join(roles.tabular))
        logger.warning("auto: %s", message)
    if shipped is not None and validation is None and refit and shipped["encoder"] == "frozen":
        _refit(run, shipped, table)
    if test_table is not None:
        run.score_fusion_test(n_bootstrap, seed)
        run.log("test", f"scored {len(test_table)} test rows for every fitted row (after all decisions)")
    model = run.models.get(shipped["step"]) if shipped else None
    result = AutoResult(model=model, chosen=chosen, shipped=shipped, rows=run.rows, steps=run.steps,
                        baseline=run.models.get(baseline_row["step"]) if baseline_row else None,
                        baseline_wins=chosen is not None and chosen is baseline_row, message=message,
                        budget=budget if isinstance(budget, str) else format_seconds(budget_s), budget_s=budget_s,
                        seconds=clock.elapsed, validation_source=validation_source, settings=settings,
                        leakage=leakage)
    if output is not None:
        if model is None:
            raise ConfigError(f"no fusion model was fitted, so there is nothing to save in {str(output)!r}; see the "
                              "reasons: " + "; ".join(f"{r['backbone']} / {r['strategy']}: {r['reason']}"
                                                      for r in run.rows if r["status"] != "ran"))
        model.save(output, overwrite=overwrite)
        result.output = str(output)
        run.log("save", f"saved step {shipped['step']} to {output} with leaderboard.json and leaderboard.md")
        if test_table is not None:
            from graftkit.fusion.evaluation import (
                evaluate_fusion,
                save_fusion_evaluation,
            )

            view = _tabular_view(test_table) if shipped["tabular_only"] else test_table
            refitted = str(shipped.get("refit", "")).startswith("refitted")
            fitted_on = table if refitted else run.fitted_on[shipped["step"]]
            train_view = _tabular_view(fitted_on) if shipped["tabular_only"] else fitted_on
            save_fusion_evaluation(output, evaluate_fusion(model, view, train=train_view, seed=seed))
            run.log("evaluation", f"evaluation.json written for `graftkit report {output}` (test metrics, "
                    "feature-group importance on the test rows, the classical baseline)")
        result.seconds = clock.elapsed
        write_leaderboard(Path(output), result)
        if track:
            from graftkit.tracking import log_model_run

            result.tracking = log_model_run(output, params={"budget": result.budget, "seed": seed,
                                                            "chosen_step": chosen["step"] if chosen else None,
                                                            "saved_step": shipped["step"]},
                                            run_name=f"auto {Path(output).name}",
                                            artifacts=[Path(output) / "leaderboard.json",
                                                       Path(output) / "leaderboard.md"])
    return result


def _refit(run: FusionRun, row: dict, table: Table) -> None:
    """The chosen frozen model refitted on training + validation rows (their features are cached: the head's cost)
    when the budget allows; its test metric is that model's."""
    estimate = row["seconds"] * len(table) / max(row["train_rows"], 1)
    fits, note = run.budget_note(estimate)
    if not fits:
        row["refit"] = f"not refitted on training + validation: would not fit the budget ({note})"
        run.log("refit", row["refit"])
        return
    started = time.perf_counter()
    data = _tabular_view(table) if row["tabular_only"] else table
    try:
        model = FusionModel(**fusion_params(run.models[row["step"]])).fit(data)
    except GraftkitError as exc:
        row["refit"] = f"refit on training + validation failed, keeping the fitted model: {exc}"
        run.log("refit", row["refit"])
        return
    run.models[row["step"]] = model
    row["refit"] = (f"refitted on training + validation ({len(table)} rows) in {time.perf_counter() - started:.1f}s "
                    "after the choice; its test metric is that model's")
    row["reason"] += f"; {row['refit']}"
    run.log("refit", row["refit"])
