"""Seeded train / validation / test splits and k-fold folds, stratified by group keys when given.

Tasks decide the keys (``Task.strata``: the class for single-label classification, a quantile bin of the
target for regression; multi-label uses iterative stratification in its own module). ``Table.split`` /
``Table.folds`` without a task stratify by the label column, as single-label classification does.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from graftkit.errors import ConfigError, DataError


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be a fraction between 0 and 1 (e.g. 0.2); got {value!r} ({name}=)")


def check_fractions(test_size: float, val_size: float) -> None:
    _check_fraction("test_size", test_size)
    if val_size:
        _check_fraction("val_size", val_size)
        if test_size + val_size >= 1.0:
            raise ConfigError(f"test_size + val_size must be below 1; got {test_size} + {val_size}")


def check_folds(k) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ConfigError(f"the number of folds must be an integer >= 2; got {k!r} (k= / --folds)")


def _rare_class_check(source: str, labels, needed: int, what: str, advice: str) -> None:
    counts = Counter(labels)
    rare = sorted(str(label) for label, n in counts.items() if n < needed)
    if rare:
        shown = ", ".join(repr(r) for r in rare[:5]) + (" ..." if len(rare) > 5 else "")
        raise DataError(
            f"{source}: {len(rare)} class(es) have fewer than {needed} examples, too few for {what}: "
            f"{shown}; add examples, drop those classes, or {advice}"
        )


def split_positions(n: int, test_size: float, val_size: float = 0.0, seed: int = 0, strata=None,
                    source: str = "the data") -> tuple[np.ndarray, ...]:
    """``(train, test)`` or ``(train, val, test)`` row positions; stratified by ``strata`` when given."""
    check_fractions(test_size, val_size)
    if strata is not None:
        strata = list(strata)
        _rare_class_check(source, strata, 3 if val_size else 2, "a stratified split",
                          "give a separate test file (CLI: --test FILE)")
    positions = np.arange(n)
    try:
        rest, test = train_test_split(positions, test_size=test_size, random_state=seed, stratify=strata)
        if not val_size:
            return rest, test
        train, val = train_test_split(rest, test_size=val_size / (1.0 - test_size), random_state=seed,
                                      stratify=None if strata is None else [strata[i] for i in rest])
    except ValueError as exc:  # sklearn: a split too small to hold one example of every class
        groups = "" if strata is None else f" with {len(set(strata))} classes stratified"
        raise DataError(f"{source}: cannot split {n} rows{groups} at test_size={test_size}: {exc}; use a larger "
                        "test_size (CLI: --test-size) or more data") from None
    return train, val, test


def split_table(table, test_size: float = 0.2, val_size: float = 0.0, seed: int = 0, strata=None):
    parts = split_positions(len(table), test_size, val_size, seed, strata, table.source)
    return tuple(table.subset(p) for p in parts)


def fold_positions(n: int, k: int, seed: int = 0, strata=None, source: str = "the data") -> list:
    """k ``(train, test)`` position pairs; stratified by ``strata`` when given."""
    check_folds(k)
    if strata is None:
        if n < k:
            raise DataError(f"{source}: {n} rows cannot make {k} folds; use fewer folds (CLI: --folds)")
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n)))
    strata = list(strata)
    _rare_class_check(source, strata, k, f"{k}-fold cross-validation", "use fewer folds (CLI: --folds)")
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), strata))


def stratified_split(table, test_size: float = 0.2, val_size: float = 0.0, seed: int = 0):
    """``Table.split``: stratified by the label column (single-label classification's split)."""
    return split_table(table, test_size, val_size, seed, strata=table.labels())


def stratified_folds(table, k: int = 5, seed: int = 0):
    check_folds(k)
    return [(table.subset(a), table.subset(b)) for a, b in fold_positions(len(table), k, seed, table.labels(),
                                                                          table.source)]
