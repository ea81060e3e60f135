"""Seeded, stratified train / validation / test splits and k-fold folds."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from graftkit.errors import ConfigError, DataError


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be a fraction between 0 and 1 (e.g. 0.2); got {value!r} ({name}=)")


def _rare_class_check(table, labels, needed: int, what: str, advice: str) -> None:
    counts = Counter(labels)
    rare = sorted(label for label, n in counts.items() if n < needed)
    if rare:
        shown = ", ".join(repr(r) for r in rare[:5]) + (" ..." if len(rare) > 5 else "")
        raise DataError(
            f"{table.source}: {len(rare)} class(es) have fewer than {needed} examples, too few for {what}: "
            f"{shown}; add examples, drop those classes, or {advice}"
        )


def stratified_split(table, test_size: float = 0.2, val_size: float = 0.0, seed: int = 0):
    labels = table.labels()
    _check_fraction("test_size", test_size)
    if val_size:
        _check_fraction("val_size", val_size)
        if test_size + val_size >= 1.0:
            raise ConfigError(f"test_size + val_size must be below 1; got {test_size} + {val_size}")
    _rare_class_check(table, labels, 3 if val_size else 2, "a stratified split",
                      "give a separate test file (CLI: --test FILE)")
    positions = np.arange(len(table))
    try:
        rest, test = train_test_split(positions, test_size=test_size, random_state=seed, stratify=labels)
        if not val_size:
            return table.subset(rest), table.subset(test)
        rest_labels = [labels[i] for i in rest]
        train, val = train_test_split(
            rest, test_size=val_size / (1.0 - test_size), random_state=seed, stratify=rest_labels
        )
    except ValueError as exc:  # sklearn: a split too small to hold one example of every class
        raise DataError(
            f"{table.source}: cannot split {len(table)} rows with {len(set(labels))} classes "
            f"stratified at test_size={test_size}: {exc}; use a larger test_size (CLI: --test-size) or more data"
        ) from None
    return table.subset(train), table.subset(val), table.subset(test)


def stratified_folds(table, k: int = 5, seed: int = 0):
    if not isinstance(k, int) or k < 2:
        raise ConfigError(f"the number of folds must be an integer >= 2; got {k!r} (k= / --folds)")
    labels = table.labels()
    _rare_class_check(table, labels, k, f"{k}-fold cross-validation", "use fewer folds (CLI: --folds)")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        (table.subset(train), table.subset(test))
        for train, test in splitter.split(np.zeros(len(labels)), labels)
    ]
