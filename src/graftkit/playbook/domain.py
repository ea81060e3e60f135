"""Domain adaptation in ``graftkit.auto`` (issue 14): with unlabelled target data (``target=`` / ``--target``),
measure the shift between the training rows and the target on the first probed backbone's frozen features
(``evaluation/shift.py``, through the feature cache), and when it is large add domain rungs after the ordinary
escalation:

- DANN: the best trainable strategy of the run (lp-ft when none ran) with ``adapt_to=`` the target;
- for text, continued masked-LM pretraining on the target texts (``graftkit.pretrain``, a small step count cut to
  what the budget allows), then the same strategy on the pretrained backbone directory.

Each is a leaderboard row (kind ``domain``) with its reason, estimated and stopped by the budget like every rung, and
chosen like every rung by the source validation metric: the target's labels are unknown, so nothing here can say
that adaptation helped on the target; the row says so. A small shift adds no rung, and the log and the leaderboard
say why."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graftkit.errors import ConfigError, DataError, GraftkitError
from graftkit.evaluation.shift import LARGE_PAD, MMD_ALPHA, domain_shift
from graftkit.playbook.budget import (
    estimate_pretrain,
    estimate_trainable,
    pretrain_steps_that_fit,
)
from graftkit.playbook.leaderboard import choose

SHIFT_ROWS = 1000  # rows per side the shift is measured on (a seeded sample): the measures' own caps are 2000 / 1000
MIN_SHIFT_ROWS = 10  # evaluation/shift.py needs this many per side
DEFAULT_PRETRAIN_STEPS = 100  # continued pretraining in auto: a short task-adaptive run, cut further by the budget
MIN_PRETRAIN_STEPS = 10  # fewer steps than this move the weights too little to be worth a rung
DEFAULT_STRATEGY = "lp-ft"  # DANN's strategy when no trainable rung ran (the default ladder's strongest rung)
PRETRAINED_SUFFIX = "-tapt"  # the pretrained backbone's directory beside the saved model: OUTPUT-tapt
LINEAGE = "graftkit-pretrain.json"


def prepare_domain(target, task, table, *, output, overwrite: bool, pretrain_output, pretrain_steps: int,
                   seed: int) -> Domain | None:
    """The target read and checked before any work (None without one): same modality as the training data, a
    place for a pretrained text backbone that graftkit may write."""
    if target is None:
        return None
    if task.generative:
        raise ConfigError(f"target= (--target) measures a domain shift on pooled encoder features and adapts a "
                          f"pooled classifier; the {task.kind} task generates sequences: drop --target")
    if getattr(table, "roles", None) is not None:
        raise ConfigError("target= (--target) reads one input column; this data has several inputs per row: drop "
                          "--target")
    if not isinstance(pretrain_steps, int) or isinstance(pretrain_steps, bool) or pretrain_steps < 1:
        raise ConfigError(f"pretrain_steps must be an integer >= 1; got {pretrain_steps!r} (--pretrain-steps)")
    from graftkit.data.unlabelled import load_unlabelled

    try:
        target_table = load_unlabelled(target, modality=table.modality) if not hasattr(target, "frame") else target
    except DataError as exc:
        raise DataError(f"{exc} (target= / --target)") from None
    if target_table.modality != table.modality:
        raise DataError(f"{target_table.source}: the target data's column {target_table.input_column!r} holds "
                        f"{target_table.modality}, but the training data holds {table.modality}; give "
                        f"{table.modality} target data (--target)")
    folder = None
    if table.modality == "text":  # continued pretraining is masked-language modelling: text encoders only
        if pretrain_output is not None:
            folder = Path(pretrain_output).expanduser()
        elif output is not None:
            saved = Path(os.path.abspath(Path(output).expanduser()))
            folder = saved.with_name(saved.name + PRETRAINED_SUFFIX)
        if folder is not None:
            from graftkit.atomic import check_output_directory

            check_output_directory(folder, overwrite, holds=lambda p: (p / LINEAGE).is_file(),
                                   what="pretrained backbone")
    return Domain(target, target_table, folder, pretrain_steps, seed)


@dataclass
class Domain:
    """The target of one ``auto`` call and what was found and done about it (``record``: the result's and the
    leaderboard's ``domain_shift``)."""

    target: object  # as given: a path is handed to DANN and to pretraining as it is
    table: object
    pretrain_dir: Path | None
    pretrain_steps: int
    seed: int
    record: dict = field(default_factory=dict)

    # -- the measurement ----------------------------------------------------------------------------------------
    def measure(self, run, graft_options: dict) -> None:
        """The shift on the first probed backbone's features, logged as a step; budget-bounded like every step."""
        from graftkit.data.unlabelled import warn_if_test_rows

        share = warn_if_test_rows(self.table, run.test, "--target") if run.test is not None else 0.0
        self.record = {"target": {"data": self.table.source, "rows": len(self.table)}, "large": False,
                       "test_rows_in_target": round(share, 4)}
        probe = next((row for row in run.rows if row["kind"] == "probe" and row["status"] == "ran"), None)
        if probe is None:
            return self._not_measured(run, "no linear probe succeeded, so there are no frozen features to compare")
        spec = probe["backbone"]
        n = min(SHIFT_ROWS, len(run.train), len(self.table))
        forward = run.forward_s[spec]
        left = run.clock.remaining(run.reserve())
        if 2 * n * forward > left:  # every sampled row embedded (the training rows may be cached): the upper bound
            n = int(max(left, 0) // max(2 * forward, 1e-12))
        if n < MIN_SHIFT_ROWS:
            why = (f"needs at least {MIN_SHIFT_ROWS} rows on each side; there are {len(run.train)} training and "
                   f"{len(self.table)} target rows") if min(len(run.train), len(self.table)) < MIN_SHIFT_ROWS else (
                f"would not fit the budget ({max(left, 0):.0f}s left, {forward * 1000:.2f} ms/row)")
            return self._not_measured(run, why)
        rng = np.random.default_rng(self.seed)
        source = run.train.subset(np.sort(rng.choice(len(run.train), n, replace=False)))
        target = self.table.subset(np.sort(rng.choice(len(self.table), n, replace=False)))
        started = time.perf_counter()
        try:
            found = domain_shift(run.models[probe["step"]], source, target, seed=self.seed)
        except GraftkitError as exc:
            return self._not_measured(run, f"failed: {exc}")
        found["source"]["of"], found["target"]["of"] = len(run.train), len(self.table)
        self.record.update(found, backbone=spec, seconds=round(time.perf_counter() - started, 3))
        pad, mmd = found["proxy_a_distance"], found["mmd"]
        run.log("domain shift", f"on {spec}'s frozen features of {n} training and {n} target rows (seeded samples of "
                f"{len(run.train)} and {len(self.table)}): {found['verdict']}; MMD² {mmd['mmd2']:.4g} (p="
                f"{mmd['p_value']:.3g}); domain-classifier error {100 * pad['error']:.1f}%")

    def _not_measured(self, run, why: str) -> None:
        self.record["skipped"] = f"not measured: {why}"
        run.log("domain shift", self.record["skipped"])

    # -- the rungs ----------------------------------------------------------------------------------------------
    def escalate(self, run, best_probe: dict | None, *, epochs: int, layers: int, graft_options: dict) -> None:
        """The domain rungs on the escalation's backbone when the shift is large; else the reason there are none."""
        record = self.record
        if not record.get("large"):
            why = (f"the shift was {record.get('skipped', 'not measured')}" if "verdict" not in record else
                   f"the shift is not large ({record['verdict']}); DANN and continued pretraining are added when "
                   f"the proxy A-distance exceeds {LARGE_PAD:g} and the MMD test rejects at p < {MMD_ALPHA:g}")
            return self._decide(run, f"no domain rung: {why}")
        if best_probe is None:
            return self._decide(run, "no domain rung: no linear probe succeeded, nothing to adapt")
        spec = best_probe["backbone"]
        best = choose([row for row in run.rows if row["kind"] == "trainable"])
        strategy = best["strategy"] if best else DEFAULT_STRATEGY
        how = (f"{strategy}, the best trainable rung of this run on validation" if best else
               f"{strategy}, since no trainable rung ran")
        pad, mmd = record["proxy_a_distance"], record["mmd"]
        shift = f"shift large: PAD {pad['pad']:.2f}, MMD p={mmd['p_value']:.3g}"
        chosen_by = (f"chosen like every rung by the source validation {run.metric}: the target's labels are unknown, "
                     "so no figure here shows the gain on the target")
        steps = [self._dann(run, spec, strategy, how, shift, chosen_by, epochs, layers, graft_options)]
        if self.table.modality == "text":
            steps.append(self._tapt(run, spec, strategy, how, shift, chosen_by, epochs, layers, graft_options))
        else:
            run.log("domain", f"continued pretraining is masked-language modelling of text encoders; the data holds "
                    f"{self.table.modality}: DANN only")
        self._decide(run, f"{shift}: domain rung(s) added after the escalation, step(s) "
                     f"{', '.join(str(step) for step in steps)} ({how}); {chosen_by}", rungs=steps)

    def _decide(self, run, decision: str, rungs=()) -> None:
        self.record["decision"], self.record["rungs"] = decision, list(rungs)
        run.log("domain", decision)

    def _dann(self, run, spec, strategy, how, shift, chosen_by, epochs, layers, graft_options) -> int:
        if run.task.unit != "row":
            return run.row("domain", spec, strategy, "skipped", f"skipped: {shift}, but domain-adversarial training "
                           f"reads one feature vector per row and the {run.task.kind} task reads one per word",
                           adaptation="DANN")["step"]
        estimate, basis = estimate_trainable(strategy, forward_s_per_row=run.forward_s[spec],
                                             train_rows=len(run.train), val_rows=len(run.val), epochs=epochs,
                                             correction=run.correction, feature_rows=run.feature_rows,
                                             target_rows=len(run.train))
        fits, note = run.budget_note(estimate)
        if not fits:
            return run.row("domain", spec, strategy, "skipped", f"skipped: {shift}, but DANN would not fit the budget "
                           f"({note}; {basis})", estimated_s=round(estimate, 1), adaptation="DANN")["step"]
        reason = (f"domain rung: {shift}; {how}, trained with domain-adversarial training (DANN) toward the "
                  f"{len(self.table)} target rows of {self.table.source}; fits the budget ({note}); {chosen_by}")
        with self._target_file() as path:
            if path is None:
                return run.row("domain", spec, strategy, "skipped", f"skipped: {shift}, but DANN reads its target from "
                               "a file and these target inputs are in-memory media; give target= a file or folder",
                               adaptation="DANN")["step"]
            return run.trainable(spec, strategy, reason, estimate, basis, graft_options, epochs, layers, kind="domain",
                                 extra={"adapt_to": path}, cost={"target_rows": len(run.train)},
                                 adaptation="DANN")["step"]

    @contextmanager
    def _target_file(self):
        """The target as a path DANN's ``adapt_to`` reads: the given one, else a CSV of its inputs for the fit."""
        if isinstance(self.target, (str, Path)):
            yield str(Path(self.target).expanduser())
            return
        items = self.table.items()
        if not all(isinstance(item, str) for item in items):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="graftkit-target-") as folder:
            path = Path(folder) / "target.csv"
            pd.DataFrame({self.table.modality: items}).to_csv(path, index=False)
            yield str(path)

    def _tapt(self, run, spec, strategy, how, shift, chosen_by, epochs, layers, graft_options) -> int:
        if self.pretrain_dir is None:
            return run.row("domain", spec, strategy, "skipped", f"skipped: {shift}, but continued pretraining writes "
                           "a backbone directory the saved model needs and there is nowhere to keep it: give output= "
                           "(-o DIR; it goes to DIR-tapt) or pretrain_output=", adaptation="TAPT")["step"]
        forward, batch = run.forward_s[spec], graft_options["batch_size"]
        # the strategy on a new backbone: no cached features, so its training rows are embedded again
        follow, follow_basis = estimate_trainable(strategy, forward_s_per_row=forward, train_rows=len(run.train),
                                                  val_rows=len(run.val), epochs=epochs, correction=run.correction,
                                                  feature_rows=len(run.train))
        left = run.clock.remaining(run.reserve())
        steps = pretrain_steps_that_fit(left - follow, forward_s_per_row=forward, batch_size=batch,
                                        correction=run.correction, most=self.pretrain_steps)
        fewest = min(MIN_PRETRAIN_STEPS, self.pretrain_steps)
        pre, pre_basis = estimate_pretrain(max(steps, fewest), forward_s_per_row=forward, batch_size=batch,
                                           correction=run.correction)
        if steps < fewest:
            return run.row("domain", spec, strategy, "skipped", f"skipped: {shift}, but continued pretraining "
                           f"({fewest} steps at least) and {strategy} would not fit the budget (estimated "
                           f"{pre + follow:.0f}s, {max(left, 0):.0f}s left; pretraining {pre_basis}; then {follow_basis})",
                           estimated_s=round(pre + follow, 1), adaptation="TAPT")["step"]
        cut = f", cut from {self.pretrain_steps} to fit the budget" if steps < self.pretrain_steps else ""
        from graftkit.training.callbacks import Deadline
        from graftkit.training.pretrain import pretrain

        corpus = self.target if not hasattr(self.target, "frame") else self.table.items()
        started = time.perf_counter()
        deadline = Deadline(time.monotonic() + run.clock.remaining(run.reserve()) - follow)
        try:  # the directory was checked before any work: graftkit's own, or new
            done = pretrain(corpus, self.pretrain_dir, backbone=spec, steps=steps, batch_size=batch, seed=self.seed,
                            device=graft_options["device"], progress=graft_options["progress"], overwrite=True,
                            save_steps=steps + 1, callbacks=[deadline])  # no checkpoint: the run is not resumed
        except GraftkitError as exc:
            return run.row("domain", spec, strategy, "failed", f"{shift}; continued pretraining of {spec} failed: "
                           f"{exc}", seconds=round(time.perf_counter() - started, 3), adaptation="TAPT")["step"]
        pretrain_s = round(time.perf_counter() - started, 3)
        lineage = done.lineage
        summary = {"directory": str(done.path), "steps": lineage["steps"], "planned_steps": steps,
                   "documents": lineage["corpus"]["documents"], "seconds": pretrain_s,
                   "estimated_s": round(pre, 1), "loss": lineage["loss"], "stopped": deadline.stopped}
        new = str(done.path)
        run.forward_s[new] = forward  # the same architecture: the same inference cost per row
        did = (f"continued masked-LM pretraining (TAPT) of {spec} on {lineage['corpus']['documents']} target documents "
               f"for {lineage['steps']} steps{cut} in {pretrain_s:.1f}s (estimated {pre:.0f}s: {pre_basis}"
               + (f"; {deadline.stopped}" if deadline.stopped else "") + f"), saved to {new}")
        follow, follow_basis = estimate_trainable(strategy, forward_s_per_row=forward, train_rows=len(run.train),
                                                  val_rows=len(run.val), epochs=epochs, correction=run.correction,
                                                  feature_rows=len(run.train))
        fits, note = run.budget_note(follow)
        if not fits:
            return run.row("domain", new, strategy, "skipped", f"skipped: {shift}; {did}; but {strategy} on it would "
                           f"no longer fit the budget ({note})", estimated_s=round(follow, 1), adaptation="TAPT",
                           pretrain=summary)["step"]
        reason = (f"domain rung: {shift}; {did}; then {how}, on that backbone; fits the budget ({note}); {chosen_by}")
        row = run.trainable(new, strategy, reason, follow, follow_basis, graft_options, epochs, layers, kind="domain",
                            cost={"feature_rows": len(run.train)}, adaptation="TAPT", pretrain=summary)
        if row.get("seconds") is not None:
            row["seconds"] = round(row["seconds"] + pretrain_s, 3)  # the rung's cost: pretraining and the fit
        row["estimated_s"] = round(pre + follow, 1)
        return row["step"]
