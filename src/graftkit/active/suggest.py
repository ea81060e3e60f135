"""``graftkit.suggest``: which unlabelled rows to label next, as a table to hand to annotators.

The model is a fitted ``Graft`` (or ``graftkit.load(DIR)``). Uncertainty comes from the task (``Task.uncertainty``
on the model's calibrated outputs: margin or entropy for classification and multi-label); diversity from k-means
on the backbone embeddings of the pool (the feature cache's, so a pool embedded once costs nothing more). The
methods themselves are in ``picks.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graftkit.active.picks import DEFAULT_BETA, Pick, by_diversity, by_hybrid, by_uncertainty
from graftkit.active.pool import candidates, read_rows
from graftkit.atomic import output_lock, write_atomic
from graftkit.errors import ArtifactError, ConfigError

logger = logging.getLogger(__name__)

METHODS = ("hybrid", "uncertainty", "diversity")
NEEDS_OUTPUTS = {"hybrid": True, "uncertainty": True, "diversity": False}
NEEDS_FEATURES = {"hybrid": True, "uncertainty": False, "diversity": True}
OUR_COLUMNS = ("row", "rank", "score", "reason")


def check_method(how: str) -> str:
    if how not in METHODS:
        raise ConfigError(f"suggestion method {how!r} is not one of {', '.join(METHODS)} (--how)")
    return how


def check_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the number of rows to suggest must be an integer >= 1; got {n!r} (-n)")
    return int(n)


def choose(task, how: str, n: int, *, outputs=None, features=None, calibration=None, measure: str | None = None,
           seed: int = 0, beta: int = DEFAULT_BETA) -> list[Pick]:
    """``n`` picks among the rows of ``outputs`` / ``features`` (positions into them), best first."""
    check_method(how)
    if how == "diversity":
        return by_diversity(features, n, seed)
    measure = task.check_uncertainty(measure)
    u = task.uncertainty(outputs, calibration, measure)
    if how == "uncertainty":
        return by_uncertainty(u, n, measure)
    return by_hybrid(features, u, n, measure, seed=seed, beta=beta)


@dataclass
class Suggestion:
    """The rows to label next: ``frame`` holds ``row`` (the pool's data-row number), ``rank``, ``score``,
    ``reason`` and the pool's own columns; ``notes`` say what was left out and why."""

    frame: pd.DataFrame
    method: str
    pool_rows: int
    candidates: int
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list:
        """The suggested rows' data-row numbers in the pool, best first."""
        return self.frame.iloc[:, 0].tolist()

    def write(self, path, overwrite: bool = False) -> Path:
        """The CSV for annotators, written atomically; an existing file only with ``overwrite``."""
        path = Path(path).expanduser()
        if path.is_dir():
            raise ArtifactError(f"output {str(path)!r} is a directory; give a CSV file path (-o FILE)")
        if path.exists() and not overwrite:
            raise ArtifactError(f"output file {str(path)!r} exists; pass --overwrite (overwrite=True) or choose another "
                                "-o")
        path.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(path):
            write_atomic(path, lambda handle: self.frame.to_csv(handle, index=False))
        return path


def suggest(model, pool, n: int = 50, *, how: str = "hybrid", labelled=None, measure: str | None = None,
            seed: int = 0, beta: int = DEFAULT_BETA, columns: dict | None = None) -> Suggestion:
    """The ``n`` rows of ``pool`` (path, DataFrame or Table, read in the model's columns) to label next.

    ``how``: ``hybrid`` (default: the ``beta * n`` least sure rows, then one per uncertainty-weighted k-means
    cluster; Zhdanov 2019), ``uncertainty`` (the task's ``measure``: margin or entropy) or ``diversity`` (one per
    k-means cluster of the embeddings). Rows whose content is in ``labelled`` (the labelled set) or repeats an
    earlier pool row are never suggested. Asking for more rows than are left suggests them all, with a warning.
    """
    check_method(how)
    n = check_count(n)
    model.check_fitted()
    task = model.task_
    if NEEDS_OUTPUTS[how]:
        measure = task.check_uncertainty(measure)  # before anything is embedded
    pool_table = read_rows(model, pool, "the pool", columns)
    labelled_table = read_rows(model, labelled, "the labelled data", columns) if labelled is not None else None
    kept = candidates(pool_table, labelled_table, pool_name=pool_table.source,
                      labelled_name=labelled_table.source if labelled_table is not None else "the labelled data")
    notes = list(kept.notes)
    if n > len(kept.positions):
        notes.append(f"asked for {n} rows but only {len(kept.positions)} pool row(s) can be suggested; suggesting "
                     "all of them")
        logger.warning("%s", notes[-1])
        n = len(kept.positions)
    rows = pool_table.subset(kept.positions)
    features = model.features(rows, pooled=True) if NEEDS_FEATURES[how] else None
    outputs = None
    if NEEDS_OUTPUTS[how]:
        if features is not None and task.unit == "row" and not task.generative:  # the head reads these features
            outputs = task.outputs(model.head_.logits(features), model.active_calibration())
        else:
            outputs = model.outputs(rows)
    picks = choose(task, how, n, outputs=outputs, features=features, calibration=model.active_calibration(),
                   measure=measure, seed=seed, beta=beta)
    for line in notes:
        logger.info("suggest: %s", line)
    return Suggestion(_frame(rows, picks), how, len(pool_table), len(kept.positions), notes)


def _frame(rows, picks: list[Pick]) -> pd.DataFrame:
    """Our columns first (prefixed ``suggest_`` where the pool has a column of that name), then the pool's."""
    chosen = rows.frame.iloc[[p.position for p in picks]]
    names = {c: (f"suggest_{c}" if c in chosen.columns else c) for c in OUR_COLUMNS}
    ours = pd.DataFrame({names["row"]: chosen.index.to_numpy(), names["rank"]: np.arange(1, len(picks) + 1),
                         names["score"]: [round(p.score, 6) for p in picks],
                         names["reason"]: [p.reason for p in picks]})
    return pd.concat([ours, chosen.reset_index(drop=True)], axis=1)
