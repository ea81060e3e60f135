"""Input checks shared by the transferability estimators: features as float64, labels as class codes,
enough examples per class, stratified subsamples. Bad input fails with a one-line DataError / ConfigError."""

from __future__ import annotations

import numpy as np

from graftkit.errors import ConfigError, DataError


def as_features(features, name: str = "features") -> np.ndarray:
    """A finite 2-D float64 array ``(n, d)`` (the estimators' arithmetic is in float64)."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{name} must be a non-empty 2-D array (examples x dimensions); got shape {array.shape}")
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise DataError(f"{name} hold NaN or infinite values in {len(rows)} row(s) (first: row {rows[0] + 1}); "
                        "check the backbone's output")
    return array


def as_labels(labels, n: int, minimum_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, classes)``: each label as its index ``0..C-1`` in the sorted classes."""
    values = np.asarray(labels)
    if values.ndim != 1 or len(values) != n:
        raise DataError(f"labels must be one per example: got {values.shape} labels for {n} examples")
    classes, codes = np.unique(values, return_inverse=True)
    if len(classes) < minimum_classes:
        raise DataError(f"labels hold {len(classes)} class(es); transferability needs at least {minimum_classes}")
    return classes, codes.astype(np.int64)


def check_per_class(codes: np.ndarray, classes, minimum: int, what: str) -> None:
    """A one-line DataError naming the classes with fewer than ``minimum`` examples."""
    counts = np.bincount(codes, minlength=len(classes))
    rare = [str(classes[c]) for c in np.flatnonzero(counts < minimum)]
    if rare:
        shown = ", ".join(repr(r) for r in rare[:5]) + (" ..." if len(rare) > 5 else "")
        raise DataError(f"too few examples per class for {what}: {len(rare)} class(es) have fewer than {minimum} "
                        f"({shown}); add examples or drop those classes")


def stratified_sample(codes: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most ``size`` examples, every class in proportion and with at least two
    (or all it has). ``size`` must leave room for two per class."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"sample must be an integer >= 1; got {size!r} (sample= / --sample)")
    n = len(codes)
    if n <= size:
        return np.arange(n)
    counts = np.bincount(codes)
    if 2 * np.count_nonzero(counts) > size:
        raise ConfigError(f"sample={size} is too small for {np.count_nonzero(counts)} classes (two examples each at "
                          f"least); use sample >= {2 * np.count_nonzero(counts)} (--sample)")
    share = counts * size / n
    quota = np.maximum(np.floor(share).astype(int), np.minimum(counts, 2))
    for c in np.argsort(-(share - np.floor(share)), kind="stable"):  # largest remainders first
        if quota.sum() >= size:
            break
        if quota[c] < counts[c]:
            quota[c] += 1
    while quota.sum() > size:  # the two-per-class floor overshot: trim the largest classes
        quota[np.argmax(quota)] -= 1
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(codes == c))[:quota[c]] for c in range(len(counts))]
    return np.sort(np.concatenate(picks))


def cv_folds(codes: np.ndarray, classes, folds: int, what: str) -> int:
    """The number of stratified folds: ``folds``, or fewer where the rarest class is smaller (at least 2)."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2; got {folds!r}")
    check_per_class(codes, classes, 2, what)
    return int(min(folds, np.bincount(codes).min()))
