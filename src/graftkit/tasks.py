"""Task kinds and their inference from the target column.

Only single-label classification is built today; the other kinds are named here so that the
rest of the code (heads, metrics, artifacts) dispatches on ``Task.kind`` from the start.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from graftkit.errors import ConfigError, DataError

TASK_KINDS = ("classification", "multilabel-classification", "regression", "token-classification",
              "speech-recognition")
BUILT_KINDS = ("classification",)


@dataclass(frozen=True)
class Task:
    kind: str
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task must be one of {', '.join(TASK_KINDS)}; got {self.kind!r}")
        if self.kind not in BUILT_KINDS:
            raise ConfigError(f"task {self.kind!r} is not available yet; graftkit builds {', '.join(BUILT_KINDS)}")

    def encode(self, labels, where=None) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = [(i, label) for i, label in enumerate(labels) if label not in index]
        if unknown:
            position, label = unknown[0]
            place = where(position) if where else f"row {position + 1}"
            known = ", ".join(repr(x) for x in self.labels[:10]) + (" ..." if len(self.labels) > 10 else "")
            raise DataError(f"{place}: label {label!r} was not seen in training ({len(unknown)} row(s) have unseen "
                            f"labels); the model knows {known}; drop those rows or refit with them")
        return np.array([index[label] for label in labels], dtype=np.int64)

    def decode(self, ids) -> list[str]:
        return [self.labels[int(i)] for i in ids]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: dict) -> Task:
        return cls(kind=data["kind"], labels=tuple(data["labels"]))


def _label_order(labels) -> tuple[str, ...]:
    """Numeric labels sort as numbers ("2" before "10"), others alphabetically."""
    unique = set(labels)
    try:
        return tuple(sorted(unique, key=float))
    except ValueError:
        return tuple(sorted(unique))


def infer_task(table, kind: str | None = None) -> Task:
    """Classification for a string / integer label column; checks there is something to learn."""
    labels = table.labels()
    counts = Counter(labels)
    if len(counts) < 2:
        only = next(iter(counts), None)
        raise DataError(f"{table.source}: column {table.label_column!r} has a single class ({only!r}) in all "
                        f"{len(labels)} rows; a classifier needs at least two classes")
    return Task(kind=kind or "classification", labels=_label_order(labels))
