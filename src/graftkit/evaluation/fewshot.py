"""The K-shot protocol of SetFit (Tunstall et al. 2022) and MTEB's classification tasks: a seeded draw of K
labelled rows per class, repeated; each strategy is fitted on the same draws and scored on the same test rows;
mean ± std over the draws, with the wall time of each draw (fit + scoring).

Draw ``r`` takes K rows of each class without replacement from ``numpy.random.default_rng(seed + r)``; the draws
are recorded (their row numbers) so a run can be repeated or compared with another tool row for row.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from graftkit.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def draw_shots(table, task, shots: int, repeats: int, seed: int = 0) -> list[np.ndarray]:
    """``repeats`` draws of ``shots`` rows per class (positions into ``table``), seeded per draw."""
    if not isinstance(shots, int) or shots < 1:
        raise ConfigError(f"--shots must be an integer >= 1; got {shots!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"--repeats must be an integer >= 1; got {repeats!r}")
    if not getattr(task, "has_classes", False):
        raise ConfigError(f"the K-shot protocol draws rows per class; a {task.kind} target has no classes")
    y = task.encode(table)
    counts = np.bincount(y, minlength=len(task.labels))
    smallest = int(counts.argmin())
    if counts[smallest] < shots:
        raise DataError(f"{table.source}: --shots {shots} is more than the {int(counts[smallest])} row(s) of class "
                        f"{task.labels[smallest]!r}, the smallest class; use --shots {int(counts[smallest])} or "
                        "fewer, or drop that class")
    draws = []
    for r in range(repeats):
        rng = np.random.default_rng(seed + r)
        picked = [rng.choice(np.flatnonzero(y == c), size=shots, replace=False) for c in range(len(task.labels))]
        draws.append(np.sort(np.concatenate(picked)))
    return draws


def fewshot(base, train, test, strategies: dict[str, dict], *, shots: int = 8, repeats: int = 10, seed: int = 0,
            on_result=None) -> dict:
    """Fit ``base.clone(**settings)`` for each named strategy on every draw of ``train`` and score it on ``test``.

    ``base``: a ``Graft`` carrying the shared settings (backbone, batch size, cache); ``strategies``: name ->
    ``Graft`` settings (``{"strategy": "linear-probe", "label_init": True}``); ``on_result(name, draw, record)``
    is called after each fit (progress). Returns the draws, each strategy's per-draw primary metric and seconds,
    and their mean / std."""
    if not strategies:
        raise ConfigError("fewshot needs at least one strategy (--strategies)")
    train = base.as_table(train, require_label=True)
    test = base.as_table(test, require_label=True)
    task = base.infer_task(train)
    draws = draw_shots(train, task, shots, repeats, seed)
    metric = task.primary_metric
    results = {}
    for name, settings in strategies.items():
        settings = dict(settings)
        per_draw = []
        for r, positions in enumerate(draws):
            model = base.clone(**settings)
            started = time.perf_counter()
            model.fit(train.subset(positions))
            scores = model.evaluate(test, curves=False)
            seconds = time.perf_counter() - started
            record = {"draw": r, metric: float(scores[metric]), "macro_f1": float(scores.get("macro_f1", np.nan)),
                      "seconds": round(seconds, 2)}
            per_draw.append(record)
            if on_result is not None:
                on_result(name, r, record)
        values = np.array([d[metric] for d in per_draw])
        times = np.array([d["seconds"] for d in per_draw])
        results[name] = {"settings": settings, "draws": per_draw, "mean": float(values.mean()),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                         "seconds_mean": float(times.mean()), "seconds_std": float(times.std(ddof=1))
                         if len(times) > 1 else 0.0}
    return {"shots": shots, "repeats": repeats, "seed": seed, "metric": metric, "classes": len(task.labels),
            "train_rows": len(train), "test_rows": len(test), "backbone": base.backbone,
            "draws": [[int(train.frame.index[p]) for p in positions] for positions in draws],
            "strategies": results}
