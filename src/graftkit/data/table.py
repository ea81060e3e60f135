"""Table: rows of inputs and (optionally) targets, with the column roles that say what each column is.

Only references live in the table (text, or a path / bytes for an image or a clip); images and audio
are decoded per batch by the backbone, so a data set never has to fit in RAM as pixels or samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from graftkit.errors import DataError

MODALITIES = ("text", "image", "audio")


@dataclass
class Table:
    """A labelled (or unlabelled) data set.

    ``frame`` keeps one column per role; its index is the 1-based data-row number in the source,
    so every error can say which row was wrong. ``base_dir`` resolves relative media paths.
    """

    frame: pd.DataFrame
    modality: str
    input_column: str
    label_column: str | tuple[str, ...] | None  # several columns: one 0/1 column per label (multi-label)
    source: str
    base_dir: Path | None = None
    explanation: list[str] = field(default_factory=list)
    # several inputs per row (``data/roles.py``): media columns with their modality, numeric and categorical
    # columns. None for a single-input table, which reads ``input_column`` alone, as it always did.
    roles: object | None = None

    def __post_init__(self) -> None:
        if self.roles is not None and self.modality == "tabular":  # a multi-input table of tabular columns only
            return
        if self.modality not in MODALITIES:
            raise DataError(f"modality must be one of {', '.join(MODALITIES)}; got {self.modality!r}")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def label_columns(self) -> tuple[str, ...]:
        if self.label_column is None:
            return ()
        return tuple(self.label_column) if isinstance(self.label_column, (tuple, list)) else (self.label_column,)

    @property
    def has_labels(self) -> bool:
        return bool(self.label_columns) and all(c in self.frame.columns for c in self.label_columns)

    def where(self, position: int, column=None) -> str:
        """Human location of a row (and column, or columns) for error messages."""
        row = self.frame.index[position]
        if isinstance(column, (tuple, list)):
            col = f", columns {', '.join(repr(c) for c in column)}"
        else:
            col = f", column {column!r}" if column else ""
        return f"{self.source}: row {row}{col}"

    def items(self) -> list:
        """Input references in row order: text strings, or absolute paths / in-memory media objects."""
        values = self.frame[self.input_column].tolist()
        if self.modality == "text" or self.base_dir is None:
            return values
        return [self._resolve(v) for v in values]

    def column_items(self, column: str, modality: str) -> list:
        """One column's references in row order (media paths resolved against ``base_dir``)."""
        values = self.frame[column].tolist()
        if modality == "text" or self.base_dir is None:
            return values
        return [self._resolve(v) for v in values]

    def _resolve(self, value):
        if isinstance(value, str) and not Path(value).is_absolute():
            return str(self.base_dir / value)
        return value

    def labels(self) -> list:
        """The label column's values; with several label columns, one tuple of their values per row."""
        if not self.has_labels:
            raise DataError(f"{self.source} has no label column; pass label=... (CLI: --label COLUMN)")
        if isinstance(self.label_column, (tuple, list)):
            return list(self.frame[list(self.label_column)].itertuples(index=False, name=None))
        return self.frame[self.label_column].tolist()

    def subset(self, positions) -> Table:
        return replace(self, frame=self.frame.iloc[np.asarray(positions, dtype=int)], explanation=[])

    def head(self, n: int) -> Table:
        return self.subset(range(min(n, len(self))))

    def split(self, test_size: float = 0.2, val_size: float = 0.0, seed: int = 0, task=None):
        """Seeded split: ``(train, test)``, or ``(train, val, test)`` when ``val_size > 0``; stratified as
        ``task`` says (``graftkit.infer_task(table)``), by default by the label column."""
        from graftkit.data.splits import stratified_split

        if task is not None:
            return task.split(self, test_size=test_size, val_size=val_size, seed=seed)
        return stratified_split(self, test_size=test_size, val_size=val_size, seed=seed)

    def folds(self, k: int = 5, seed: int = 0, task=None):
        """k-fold: a list of ``(train, test)`` tables, stratified as ``task`` says (default: by label)."""
        from graftkit.data.splits import stratified_folds

        if task is not None:
            return task.folds(self, k=k, seed=seed)
        return stratified_folds(self, k=k, seed=seed)

    def fingerprint(self) -> str:
        """Hash of the inputs' content and the labels: names the exact data a model was fitted on."""
        from graftkit.data.content import content_key

        digest = hashlib.sha256()
        if self.roles is not None:  # every input column: media by content, tabular by value
            for column, modality in self.roles.media:
                for position, item in enumerate(self.column_items(column, modality)):
                    item = "" if modality == "text" and not isinstance(item, str) else item
                    digest.update(content_key(item, modality, where=lambda p=position, c=column: self.where(p, c)).encode())
            for column in self.roles.tabular:
                digest.update(("\x00" + column + "\x00" + "\x01".join(map(str, self.frame[column].tolist()))).encode())
        for position, item in enumerate(self.items() if self.roles is None else ()):
            digest.update(content_key(item, self.modality, where=lambda p=position: self.where(p, self.input_column)).encode())
        if self.has_labels:
            for label in self.labels():
                digest.update(b"\x00" + str(label).encode())
        return digest.hexdigest()
