"""Leakage on a multi-input table: test rows whose media cells (every text / image / audio column) duplicate one
training row's, which make held-out scores optimistic just as a duplicated single input does.

The single-input detectors (``evaluation/leakage.py``) run on each media column alone; a test row leaks when one
training row matches it in every media column:

- exact: every media cell equal after normalisation (the normalised-content hash of each cell; a blank text
  equals a blank text, since both are the empty text the model reads);
- near: each column matched by one of the detectors at its usual threshold — the same hash, the edited-copy text
  similarity (text columns), or the feature cosine of the model's own embedding of that column (when features are
  given). The candidate training rows of a test row are the ones any column's detectors named as its best match;
  each candidate is then checked column by column, and the row counts under the weakest detector any column needed
  (exact < text < embedding) with the smallest similarity of its columns.

Tabular columns are not compared: the same age in two rows is no leak. A test row whose media cells are all blank is
never flagged (it has no content to duplicate). Besides the row count the record keeps, per media column, how many
test rows repeat that column's value of some training row (blank cells not counted): one duplicated column is no
leak by itself, but it says which input carries the repeats. The record has the shape of the single-input one, so
``graftkit report`` renders it with the same section (plus the per-column table) and ``drop_leaked`` drops its rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from graftkit.data.table import Table
from graftkit.errors import DataError
from graftkit.evaluation.leakage import (
    DEFAULT_TEXT_THRESHOLD,
    DEFAULT_THRESHOLD,
    KINDS,
    MAX_EXAMPLES,
    check_thresholds,
    content_hashes,
    leakage_report,
    match_rows,
    normalize_text,
    shown_input,
    text_similarity,
    unit_rows,
)
from graftkit.fusion.encoders import column_values

COLUMN_EXAMPLES = 5  # examples kept per media column (the row-level examples are the main ones)


def column_view(table, column: str, modality: str) -> Table:
    """One media column of a multi-input table as a single-input table (a blank text is the empty text, media
    paths resolved), with the label columns, so the single-input detectors read it."""
    labels = list(table.label_columns) if table.has_labels else []
    frame = pd.DataFrame({column: column_values(table, column, modality)}, index=table.frame.index, dtype=object)
    for name in labels:
        if name != column:
            frame[name] = table.frame[name].to_numpy()
    return Table(frame=frame, modality=modality, input_column=column, label_column=table.label_column if labels
                 else None, source=table.source)


def _blank(view: Table) -> np.ndarray:
    """Whether each row's cell has no content: a text that normalises to nothing (media cells are never blank)."""
    if view.modality != "text":
        return np.zeros(len(view), dtype=bool)
    return np.array([not normalize_text(v) for v in view.items()])


class _Column:
    """One media column of both splits: its views, hashes, blanks, detector matches and unit features."""

    def __init__(self, train, test, column: str, modality: str, features: tuple | None, threshold: float,
                 text_threshold: float | None):
        self.name, self.modality = column, modality
        self.train, self.test = column_view(train, column, modality), column_view(test, column, modality)
        self.items = {"train": self.train.items(), "test": self.test.items()}
        self.train_hash, self.test_hash = content_hashes(self.train), content_hashes(self.test)
        self.train_blank, self.test_blank = _blank(self.train), _blank(self.test)
        found, self.methods, self.similarity = match_rows(
            self.train, self.test, *(features or (None, None)), threshold=threshold, text_threshold=text_threshold)
        self.found = {p: entry for p, entry in found.items() if not self.test_blank[p]}  # a blank repeats nothing
        self.units = None if features is None else (unit_rows(features[0]), unit_rows(features[1]))
        self.uses_text = modality == "text" and text_threshold is not None

    def pair(self, i: int, j: int, threshold: float, text_threshold: float | None) -> tuple[str, float] | None:
        """How test row ``i`` matches training row ``j`` in this column: the first detector that flags the pair
        (exact, text, embedding) and its similarity, or None."""
        if self.test_hash[i] == self.train_hash[j]:
            return "exact", 1.0
        if self.test_blank[i] or self.train_blank[j]:  # one side blank, the other not: different
            return None
        if self.uses_text:
            ratio = text_similarity(self.items["test"][i], self.items["train"][j])
            if ratio >= text_threshold:
                return "text", ratio
        if self.units is not None:
            cosine = float(self.units[1][i] @ self.units[0][j])
            if cosine >= threshold:
                return "embedding", cosine
        return None

    def _side(self, view) -> str:
        return "train" if view is self.train else "test"

    def summary(self) -> dict:
        """How many test rows repeat this column's value of some training row, by detector, with a few examples."""
        report = leakage_report(self.train, self.test, self.found, method=" + ".join(self.methods),
                                shown=lambda table, p: shown_input(self.items[self._side(table)][p]),
                                threshold=None,
                                text_threshold=None, max_examples=COLUMN_EXAMPLES)
        return {"modality": self.modality, "method": report["method"], "duplicated": report["leaked"],
                "share": report["share"], **{kind: report[kind] for kind in KINDS},
                "blank_test_cells": int(self.test_blank.sum()), "examples": report["examples"]}


def _row_text(columns: list[_Column], side: str, position: int) -> str:
    return " | ".join(f"{c.name}: {shown_input(c.items[side][position], 120)}" for c in columns)


def multi_input_leakage(train, test, train_features: dict | None = None, test_features: dict | None = None, *,
                        threshold: float = DEFAULT_THRESHOLD, text_threshold: float | None = DEFAULT_TEXT_THRESHOLD,
                        max_examples: int = MAX_EXAMPLES) -> dict:
    """Test rows of a multi-input table that duplicate one training row in every media column (module docstring).
    ``train_features`` / ``test_features``: media column -> that column's embedding of each row (columns left out
    have no embedding detector). Returns the single-input record's fields plus ``columns`` (per media column)."""
    check_thresholds(threshold, text_threshold)
    if train.roles is None or test.roles is None:
        raise DataError("leakage: multi_input_leakage compares multi-input tables (load_data with several columns); "
                        "use evaluation.leakage.near_duplicates for a single input")
    if train.roles.media != test.roles.media:
        raise DataError(f"leakage: train's media columns ({train.roles.describe()}) differ from test's "
                        f"({test.roles.describe()}); compare two splits of the same data")
    if not test.roles.media:
        raise DataError(f"{test.source}: leakage compares text / image / audio cells, and this table has only "
                        "tabular columns")
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"leakage: train has {len(train)} and test {len(test)} rows; both need rows to compare")
    train_features, test_features = dict(train_features or {}), dict(test_features or {})
    if set(train_features) != set(test_features):
        raise DataError("leakage: give the features of the same media columns for both splits")
    columns = [_Column(train, test, c, m, (train_features[c], test_features[c]) if c in train_features else None,
                       threshold, text_threshold) for c, m in test.roles.media]
    found = _row_matches(columns, len(test), threshold, text_threshold)
    methods = list(dict.fromkeys(m for c in columns for m in c.methods))
    used_features = any(c.units is not None for c in columns)
    names = ", ".join(c.name for c in columns)
    report = leakage_report(
        train, test, found, method=f"every media column ({names}) matches one training row's: " + " + ".join(methods),
        shown=lambda table, p: _row_text(columns, "train" if table is train else "test", p),
        threshold=threshold if used_features else None,
        text_threshold=text_threshold if any(c.uses_text for c in columns) else None,
        max_examples=max_examples, what=f"duplicate a training row in every media column ({names})")
    report["columns"] = {c.name: c.summary() for c in columns}
    report["scope"] = (f"a test row counts when one training row matches it in every media column ({names}); "
                       "tabular columns are not compared")
    return report


def _row_matches(columns: list[_Column], n_test: int, threshold: float, text_threshold: float | None) -> dict:
    """Each flagged test row -> its best training match across every column (exact rows by the tuple of hashes)."""
    train_rows: dict[tuple, int] = {}
    for j, key in enumerate(zip(*(c.train_hash for c in columns))):
        train_rows.setdefault(key, j)
    found: dict[int, dict] = {}
    for i in range(n_test):
        if all(c.test_blank[i] for c in columns):
            continue
        key = tuple(c.test_hash[i] for c in columns)
        if key in train_rows:
            found[i] = {"kind": "exact", "train_position": train_rows[key], "similarity": 1.0}
            continue
        best = None
        for j in sorted({c.found[i]["train_position"] for c in columns if i in c.found}):
            pairs = [c.pair(i, j, threshold, text_threshold) for c in columns]
            if any(p is None for p in pairs):
                continue
            kind = max((p[0] for p in pairs), key=KINDS.__getitem__)
            candidate = {"kind": kind, "train_position": j, "similarity": min(p[1] for p in pairs)}
            if best is None or (KINDS[kind], -candidate["similarity"]) < (KINDS[best["kind"]], -best["similarity"]):
                best = candidate
        if best is not None:
            found[i] = best
    return found


def find_fusion_leakage(model, train, test, *, threshold: float = DEFAULT_THRESHOLD,
                        text_threshold: float | None = DEFAULT_TEXT_THRESHOLD,
                        max_examples: int = MAX_EXAMPLES) -> dict:
    """``multi_input_leakage`` with the embeddings ``model`` (a fitted ``FusionModel``) reads each media column with
    (cached features are reused; a joint model's joined text columns have none and are compared as text)."""
    train = model.as_table(train, require_label=False)
    test = model.as_table(test, require_label=False)
    featurizer = model.featurizer_
    train_features, test_features = featurizer.column_embeddings(train), featurizer.column_embeddings(test)
    return multi_input_leakage(train, test, train_features, test_features, threshold=threshold,
                               text_threshold=text_threshold, max_examples=max_examples)
