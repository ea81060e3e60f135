"""Does ``suggest`` beat random picks? A pool-based active-learning simulation on a labelled set.

The labelled set is split into a pool (its labels hidden from the pickers) and a held-out test part (or a given
test set). Each seed starts from the same small seeded labelled set for every arm (``start`` rows: that many
per class spread evenly where the task has classes), then each of ``rounds`` rounds adds ``per_round`` rows,
chosen by ``suggest`` itself (the probe refitted on the rows labelled so far, its calibrated outputs and the cached
embeddings of the rest of the pool) or at random; after every round a linear probe refitted on the labelled rows
is scored on the test part. The result is the task's primary metric against the number of labels, mean ± std over
seeds, per arm. The pool and test rows are embedded once (the feature cache); every round only refits heads.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from graftkit.active.picks import DEFAULT_BETA
from graftkit.active.pool import candidates
from graftkit.active.suggest import check_method, suggest
from graftkit.data import Table, load_data
from graftkit.errors import ConfigError, DataError
from graftkit.evaluation.learning_curve import sample_per_class
from graftkit.graft import DEFAULT_BACKBONE, Graft

logger = logging.getLogger(__name__)

RANDOM = "random"


def _summary(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [round(float(v), 6) for v in values]}


def _check(rounds, seeds, per_round, start) -> None:
    for name, flag, value in (("rounds", "--rounds", rounds), ("seeds", "--seeds", seeds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r} ({flag})")
    for name, flag, value in (("per_round", "--per-round", per_round), ("start", "--start", start)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r} ({flag})")


def _start_rows(task, y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The seeded starting labelled set: ``size`` rows spread evenly over the classes (at least one each), or a
    plain random draw for a task without classes."""
    if task.has_classes:
        return sample_per_class(y, max(1, round(size / len(task.labels))), seed)
    return np.sort(np.random.default_rng(seed).choice(len(y), size=min(size, len(y)), replace=False))


def simulate(data, test=None, *, methods=("hybrid",), rounds: int = 5, per_round: int | None = None,
             start: int | None = None, seeds: int = 5, pool_cap: int | None = None, test_size: float = 0.2,
             measure: str | None = None, beta: int = DEFAULT_BETA, base: Graft | None = None,
             backbone: str = DEFAULT_BACKBONE, columns: dict | None = None, pickers: dict | None = None,
             **graft_options) -> dict:
    """The curve "primary metric vs labels" for each method of ``suggest`` against random picks.

    ``per_round`` defaults to 2 rows per class (a task with classes; else it must be given), ``start`` to
    ``per_round``. ``pool_cap`` caps the pool at a seeded random subsample (embedding cost). ``base`` is an unfitted
    ``Graft`` whose settings every probe uses (default: a linear probe on ``backbone``). ``pickers`` are more arms
    to compare (e.g. a peer tool's query strategy): name -> ``pick(X_labelled, y_labelled, X_rest, k, seed)``
    returning ``k`` positions into ``X_rest``, run on the same starts and scored by the same probe.
    """
    _check(rounds, seeds, per_round, start)
    methods = tuple(check_method(m) for m in methods)
    columns = {k: v for k, v in (columns or {}).items() if v is not None}
    table = data if isinstance(data, Table) else load_data(data, **columns)
    base = base if base is not None else Graft(backbone, strategy="linear-probe", **graft_options)
    task = base.infer_task(table)
    if any(m != "diversity" for m in methods):
        measure = task.check_uncertainty(measure)
    if test is None:
        pool, test_table = task.split(table, test_size=test_size, seed=0)
        test_note = f"a seeded {test_size:g} split of {table.source} (seed 0)"
    else:
        roles = {table.modality: table.input_column, "label": table.label_column}
        test_table = test if isinstance(test, Table) else load_data(test, **{**columns, **roles})
        pool, test_note = table, test_table.source
    if len(test_table) == 0:
        raise DataError(f"{table.source}: the test part is empty; give more rows or a test set (--test)")
    pool_note = f"all {len(pool)} rows"
    if pool_cap is not None and len(pool) > pool_cap:
        keep = np.sort(np.random.default_rng(0).choice(len(pool), size=pool_cap, replace=False))
        pool_note = f"a seeded random {pool_cap} of {len(pool)} rows (--pool-cap)"
        pool = pool.subset(keep)
    pool = pool.subset(candidates(pool, None, pool_name=pool.source).positions)  # repeats would be picked twice
    if per_round is None:
        if not task.has_classes:
            raise ConfigError(f"a {task.kind} target has no classes to give per_round a default; pass per_round "
                              "(--per-round N)")
        per_round = 2 * len(task.labels)
    start = per_round if start is None else start
    y_pool, y_test = task.encode(pool), task.encode(test_table)
    needed = start + rounds * per_round
    if needed > len(pool):
        raise ConfigError(f"{rounds} rounds of {per_round} after a start of {start} need {needed} pool rows; the pool "
                          f"has {len(pool)} (lower --rounds / --per-round, or raise --pool-cap)")
    started = time.perf_counter()
    X_test = base.features(test_table, task)
    X_pool = base.features(pool, task)  # embed the pool once: every later fit and suggestion reads the cache
    embed_seconds = time.perf_counter() - started
    pickers = dict(pickers or {})
    arms = (RANDOM, *methods, *pickers)
    scores = {arm: [[] for _ in range(rounds + 1)] for arm in arms}
    labels = {arm: [[] for _ in range(rounds + 1)] for arm in arms}
    probe = base.clone(progress=False)  # refitted in place every round: the backbone is loaded once
    # arms that do not read the probe's probabilities skip its calibration: the temperature leaves the arg-max,
    # and so the score, unchanged
    plain = base.clone(progress=False, calibrate=False)
    where = {row: i for i, row in enumerate(pool.frame.index)}  # a pool row number -> its position
    started = time.perf_counter()
    for seed in range(seeds):
        first = _start_rows(task, y_pool, start, seed)
        for arm in arms:
            labelled = first
            rng = np.random.default_rng([seed, 1])
            for step in range(rounds + 1):
                model = (probe if arm in methods else plain).set_params(seed=seed).fit(pool.subset(labelled))
                raw = model.head_.logits(X_test)
                scores[arm][step].append(task.primary(y_test, task.outputs(raw, model.active_calibration())))
                labels[arm][step].append(len(labelled))
                if step == rounds:
                    break
                rest = np.setdiff1d(np.arange(len(pool)), labelled)
                if arm == RANDOM:
                    new = rng.choice(rest, size=per_round, replace=False)
                elif arm in pickers:
                    chosen = np.asarray(pickers[arm](X_pool[labelled], y_pool[labelled], X_pool[rest], per_round, seed))
                    new = rest[np.unique(chosen)]
                    if len(new) != per_round:
                        raise ValueError(f"picker {arm!r} gave {len(new)} distinct rows, not {per_round}")
                else:
                    chosen = suggest(model, pool.subset(rest), per_round, how=arm, labelled=pool.subset(labelled),
                                     measure=measure, seed=seed, beta=beta)
                    new = np.array([where[row] for row in chosen.rows], dtype=np.int64)
                labelled = np.sort(np.concatenate([labelled, new]))
            logger.info("simulate: seed %d, %s: %s %.4f with %d labels", seed, arm, task.primary_metric,
                        scores[arm][-1][-1], labels[arm][-1][-1])
    curves = {arm: [{"labels": int(np.mean(labels[arm][s])), task.primary_metric: _summary(scores[arm][s])}
                    for s in range(rounds + 1)] for arm in arms}
    return {"metric": task.primary_metric, "source": table.source, "test": test_note, "n_test": len(test_table),
            "pool": pool_note, "n_pool": len(pool), "start": int(start), "per_round": int(per_round),
            "rounds": rounds, "seeds": seeds, "measure": measure, "methods": list(methods), "pickers": list(pickers), "curves": curves,
            "final": {arm: curves[arm][-1] for arm in arms},
            "seconds": {"embedding": round(embed_seconds, 1), "rounds": round(time.perf_counter() - started, 1)}}

