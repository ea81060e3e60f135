"""Rungs of ``auto`` bounded by the budget through the training rows they see.

Every later rung of ``auto`` is skipped or stopped when it would not fit, but the first probe must run: without it
there is nothing to escalate from and no model to save. On a large table its feature extraction alone can outlast
the budget (16,000 SST-2 rows with MiniLM took longer than a 10-minute budget on a busy 2-core box). So before it
runs, one small batch of training rows is embedded and timed (it lands in the feature cache, so nothing is wasted),
and when extracting every training, validation and test row would not fit what is left of the budget, the probe is
fitted on a seeded subsample of the training rows, stratified as the task splits, sized to fit. The validation and
test rows are never subsampled: the choice and the test scores stay comparable with every other row.

The first frozen-fusion rung of a multi-input table's ``auto`` is bounded the same way (``bounded_fusion_rows``):
every media column of a warm-up batch and of a timed sample is embedded through the encoders the rung then fits
with, and when the whole training split would not fit, the trees get the most rows that fit, stratified as the
task splits, at least ``MIN_FUSION_ROWS`` (or all, when fewer).

A trainable rung whose estimate on every training row does not fit is not simply skipped either: first its epochs
go down (to 1: distinct rows teach more than repeated ones), then its training rows, to the most that fit, drawn so
that the first probe's rows come first (their pretrained features are cached), with a floor of ``MIN_TRAINABLE_ROWS``
below which a fine-tuned model is not worth its time. The rung's row says what it saw; the ``Deadline`` still
stops it cleanly if the estimate was short.
"""

from __future__ import annotations

import time

import numpy as np

SAMPLE_BATCHES = 2      # batches of training rows timed before the first probe (after one untimed warm-up batch)
HEAD_SHARE = 0.25       # the head's fit (C by cross-validation) taken as this share of the extraction's time
MIN_ROWS = 50           # fewer training rows than this make a probe too noisy to be worth a model
MIN_TRAINABLE_ROWS = 200  # fewer than this: a fine-tuned rung is noise, the probe on more rows is the better buy
MIN_FUSION_ROWS = 200   # fewer than this: gradient-boosted trees on a few hundred wide rows are noise


def forward_seconds_per_row(spec: str, train, task, graft_options: dict):
    """``(seconds per row, sample size, model)``: one inference pass timed over a small sample of ``train`` (the
    backbone is loaded and one warm-up batch embedded before the clock starts: the first batch pays for thread
    pools and lazy initialisation, measured at 2.8x a steady batch with MiniLM), ``None`` seconds when the whole
    sample came from the feature cache (then the rest most likely does too); ``model`` is the unfitted probe
    ``Graft`` with its backbone loaded, for the probe itself to fit, so the backbone loads once."""
    from graftkit.graft import Graft

    batch = graft_options["batch_size"]
    warm_up = train.head(min(len(train), batch))
    rest = range(len(warm_up), min(len(train), len(warm_up) + SAMPLE_BATCHES * batch))
    sample = train.subset(rest) if len(rest) else warm_up  # a table of one batch is timed as it is
    model = Graft(backbone=spec, strategy="linear-probe", **graft_options)
    model.check_modality(warm_up)  # loads the backbone: not part of the per-row time
    if len(rest):
        model.features(warm_up, task=task)
    started = time.perf_counter()
    model.features(sample, task=task)
    seconds = time.perf_counter() - started
    embedded = model.last_extraction_["embedded"]
    return (seconds / embedded if embedded else None), len(sample), model


def fusion_forward_seconds(model, train):
    """``(seconds per row, sample size, encoders)`` for a frozen ``FusionModel``: every media column of a small
    sample of ``train`` embedded through ``model.build_encoders(train)`` (the backbones are loaded and a warm-up batch
    embedded before the clock starts, as for the first probe); ``None`` seconds when the sample was all in the
    feature cache. The sample's own share of repeated and cached values stands for the rest. ``encoders``: for the
    rung to fit with (``FusionModel.fit(encoders=)``), so each backbone loads once."""
    from graftkit.fusion.featurize import Featurizer

    batch = model.batch_size
    warm_up = train.head(min(len(train), batch))
    rest = range(len(warm_up), min(len(train), len(warm_up) + SAMPLE_BATCHES * batch))
    sample = train.subset(rest) if len(rest) else warm_up
    encoders = model.build_encoders(train)  # loads the backbones: not part of the per-row time
    featurizer = Featurizer(train.roles, encoders)
    if len(rest):
        featurizer.column_embeddings(warm_up)
    distinct = list(dict.fromkeys(encoders.values()))
    before = sum(e.embedded for e in distinct)
    started = time.perf_counter()
    featurizer.column_embeddings(sample)
    seconds = time.perf_counter() - started
    embedded = sum(e.embedded for e in distinct) - before
    return (seconds / len(sample) if embedded else None), len(sample), encoders


def rows_that_fit(forward_s: float, *, train_rows: int, other_rows: int, seconds_left: float,
                  floor: int = MIN_ROWS) -> int:
    """How many training rows the first probe can embed and fit in ``seconds_left``, after embedding the
    ``other_rows`` (validation and test) it must score; at least ``floor`` (or all, when fewer)."""
    left_for_training = seconds_left - forward_s * other_rows
    fit = int(left_for_training / (forward_s * (1.0 + HEAD_SHARE))) if left_for_training > 0 else 0
    return min(train_rows, max(fit, min(floor, train_rows)))


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
    rows, note = _rows_within_budget(run, forward_s, sampled, floor=MIN_ROWS, what="first probe")
    return rows, note, model


def bounded_fusion_rows(run, model, label: str):
    """``(training table for the first frozen-fusion rung, note or None, encoders or None)``: ``model`` (an
    unfitted frozen ``FusionModel``) timed on a sample of ``run.train``; all of it when embedding every media column
    of the training, validation and test rows fits the budget, else a stratified seeded subsample sized to fit, at
    least ``MIN_FUSION_ROWS``, with the sentence saying so. A sample the backbones cannot read leaves the rung to
    fail with its own reason (no encoders)."""
    from graftkit.errors import GraftkitError

    if not run.train.roles.media:  # the tabular columns alone: nothing to embed
        return run.train, None, None
    try:
        forward_s, sampled, encoders = fusion_forward_seconds(model, run.train)
    except GraftkitError:
        return run.train, None, None
    if forward_s is None:
        run.log("budget", f"first frozen fusion: its {sampled}-row timing sample was all in the feature cache; "
                "no bound")
        return run.train, None, encoders
    run.forward_s.setdefault(label, forward_s)
    rows, note = _rows_within_budget(run, forward_s, sampled, floor=MIN_FUSION_ROWS, what="first frozen fusion")
    return rows, note, encoders


def _rows_within_budget(run, forward_s: float, sampled: int, *, floor: int, what: str):
    """``(training rows, note or None)``: all of ``run.train`` when embedding them (and the head's share) and the
    validation / test rows at ``forward_s`` fits what is left of the budget, else the most rows that fit (at least
    ``floor``), stratified and seeded."""
    train = run.train
    other = len(run.val) + (len(run.test) if run.test is not None else 0)
    left = run.clock.remaining(run.reserve())
    rows = rows_that_fit(forward_s, train_rows=len(train), other_rows=other, seconds_left=left, floor=floor)
    need = forward_s * ((1.0 + HEAD_SHARE) * len(train) + other)
    if rows >= len(train):
        run.log("budget", f"{what}: {len(train)} training + {other} other rows at "
                f"{forward_s * 1000:.1f} ms/row fit the budget (estimated {need:.0f}s, {max(left, 0):.0f}s left)")
        return train, None
    subsample = _subsample(run.task, train, rows, run.settings.get("seed", 0))
    note = (f"fitted on a seeded stratified subsample of {len(subsample)} of the {len(train)} training rows: "
            f"embedding all of them and the {other} validation / test rows at {forward_s * 1000:.1f} ms/row "
            f"(timed on {sampled} rows) would take about {need:.0f}s, and {max(left, 0):.0f}s of the budget is left")
    if forward_s * ((1.0 + HEAD_SHARE) * min(floor, len(train)) + other) > left:
        note += f" (the floor of {floor} rows: the budget cannot fit even that)"
    run.log("budget", f"{what} {note}")
    return subsample, note


def _nested_subsample(task, train, first, rows: int, seed: int):
    """``rows`` of ``train``: the rows of ``first`` (the first probe's, a subset of ``train``) before any other,
    each part stratified as the task splits."""
    if first is None or len(first) >= len(train):
        return _subsample(task, train, rows, seed) if rows < len(train) else train
    if rows <= len(first):
        return _subsample(task, first, rows, seed) if rows < len(first) else first
    inside = train.frame.index.get_indexer(first.frame.index)
    others = train.subset(np.setdiff1d(np.arange(len(train)), inside))
    extra = _subsample(task, others, rows - len(first), seed) if rows - len(first) < len(others) else others
    chosen = np.concatenate([inside, train.frame.index.get_indexer(extra.frame.index)])
    return train.subset(np.sort(chosen))


def _largest(low: int, high: int, fits) -> int:
    """The largest ``n`` in ``[low, high]`` with ``fits(n)``, given ``fits(low)`` and ``fits`` monotone."""
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def fit_trainable_to_budget(run, spec: str, strategy: str, epochs: int):
    """``(training table, epochs, estimate, basis, note)`` for a trainable rung that does not fit the budget on
    every training row at ``epochs``: fewer epochs first, then the most training rows that fit (at least
    ``MIN_TRAINABLE_ROWS``); ``None`` when not even that fits."""
    from graftkit.playbook.budget import estimate_trainable

    first = run.first_probe_rows
    cached = len(first) if first is not None else len(run.train)

    def estimate(rows: int, n_epochs: int):
        uncached = rows if run.feature_rows else max(0, rows - cached)
        return estimate_trainable(strategy, forward_s_per_row=run.forward_s[spec], train_rows=rows,
                                  val_rows=len(run.val), epochs=n_epochs, correction=run.correction,
                                  feature_rows=uncached)

    left = run.clock.remaining(run.reserve())
    total = len(run.train)
    if epochs > 1 and estimate(total, 1)[0] <= left:
        n_epochs = _largest(1, epochs - 1, lambda n: estimate(total, n)[0] <= left)
        seconds, basis = estimate(total, n_epochs)
        return run.train, n_epochs, seconds, basis, (f"{n_epochs} of the {epochs} epochs, so that it fits the "
                                                     f"budget ({left:.0f}s left)")
    floor = min(MIN_TRAINABLE_ROWS, total)
    if estimate(floor, 1)[0] > left:
        return None
    rows = _largest(floor, total, lambda n: estimate(n, 1)[0] <= left)
    table = _nested_subsample(run.task, run.train, first, rows, run.settings.get("seed", 0))
    seconds, basis = estimate(len(table), 1)
    note = (f"1 of the {epochs} epochs on a seeded stratified subsample of {len(table)} of the {total} training "
            f"rows (the first probe's rows first), the most that fit the budget ({left:.0f}s left)")
    return table, 1, seconds, basis, note
