"""The first linear probe within the budget.

Every later rung of ``auto`` is skipped or stopped when it would not fit, but the first probe must run: without it
there is nothing to escalate from and no model to save. On a large table its feature extraction alone can outlast
the budget (16,000 SST-2 rows with MiniLM took longer than a 10-minute budget on a busy 2-core box). So before it
runs, one small batch of training rows is embedded and timed (it lands in the feature cache, so nothing is wasted),
and when extracting every training, validation and test row would not fit what is left of the budget, the probe is
fitted on a seeded subsample of the training rows, stratified as the task splits, sized to fit. The validation and
test rows are never subsampled: the choice and the test scores stay comparable with every other row.
"""

from __future__ import annotations

import time

import numpy as np

SAMPLE_BATCHES = 2      # batches of training rows timed before the first probe
HEAD_SHARE = 0.25       # the head's fit (C by cross-validation) taken as this share of the extraction's time
MIN_ROWS = 50           # fewer training rows than this make a probe too noisy to be worth a model


def forward_seconds_per_row(spec: str, train, task, graft_options: dict):
    """``(seconds per row, sample size, model)``: one inference pass timed over a small sample of ``train`` (the
    backbone is loaded before the clock starts), ``None`` seconds when the whole sample came from the feature
    cache (then the rest most likely does too); ``model`` is the unfitted probe ``Graft`` with its backbone
    loaded, for the probe itself to fit, so the backbone loads once."""
    from graftkit.graft import Graft

    sample = train.head(min(len(train), SAMPLE_BATCHES * graft_options["batch_size"]))
    model = Graft(backbone=spec, strategy="linear-probe", **graft_options)
    model.check_modality(sample)  # loads the backbone: not part of the per-row time
    started = time.perf_counter()
    model.features(sample, task=task)
    seconds = time.perf_counter() - started
    embedded = model.last_extraction_["embedded"]
    return (seconds / embedded if embedded else None), len(sample), model


def rows_that_fit(forward_s: float, *, train_rows: int, other_rows: int, seconds_left: float) -> int:
    """How many training rows the first probe can embed and fit in ``seconds_left``, after embedding the
    ``other_rows`` (validation and test) it must score; at least ``MIN_ROWS`` (or all, when fewer)."""
    left_for_training = seconds_left - forward_s * other_rows
    fit = int(left_for_training / (forward_s * (1.0 + HEAD_SHARE))) if left_for_training > 0 else 0
    return min(train_rows, max(fit, min(MIN_ROWS, train_rows)))


def _subsample(task, train, rows: int, seed: int):
    """``rows`` of ``train``, stratified as the task splits; seeded uniform when the strata cannot split that
    finely (more classes than rows on one side)."""
    from graftkit.errors import DataError

    try:
        return task.split(train, test_size=1.0 - rows / len(train), seed=seed)[0]
    except DataError:
        return train.subset(np.sort(np.random.default_rng(seed).choice(len(train), size=rows, replace=False)))


def bounded_training_rows(run, spec: str, graft_options: dict):
    """``(training table for the first probe, note or None, the probe's unfitted model)``: all of ``run.train``
    when its extraction fits the budget, else a stratified seeded subsample sized to fit, with the sentence
    saying so."""
    train = run.train
    forward_s, sampled, model = forward_seconds_per_row(spec, train, run.task, graft_options)
    if forward_s is None:
        run.log("budget", f"first probe: its {sampled}-row timing sample was all in the feature cache; no bound")
        return train, None, model
    run.forward_s.setdefault(spec, forward_s)
    other = len(run.val) + (len(run.test) if run.test is not None else 0)
    left = run.clock.remaining(run.reserve())
    rows = rows_that_fit(forward_s, train_rows=len(train), other_rows=other, seconds_left=left)
    need = forward_s * ((1.0 + HEAD_SHARE) * len(train) + other)
    if rows >= len(train):
        run.log("budget", f"first probe: {len(train)} training + {other} other rows at "
                f"{forward_s * 1000:.1f} ms/row fit the budget (estimated {need:.0f}s, {max(left, 0):.0f}s left)")
        return train, None, model
    subsample = _subsample(run.task, train, rows, run.settings.get("seed", 0))
    note = (f"fitted on a seeded stratified subsample of {len(subsample)} of the {len(train)} training rows: "
            f"embedding all of them and the {other} validation / test rows at {forward_s * 1000:.1f} ms/row "
            f"(timed on {sampled} rows) would take about {need:.0f}s, and {max(left, 0):.0f}s of the budget is left")
    if forward_s * ((1.0 + HEAD_SHARE) * min(MIN_ROWS, len(train)) + other) > left:
        note += f" (the floor of {MIN_ROWS} rows: the budget cannot fit even that)"
    run.log("budget", f"first probe {note}")
    return subsample, note, model
