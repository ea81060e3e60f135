"""Ragged arrays: one array per row with its own length (the words of a sentence), held in a 1-D numpy object
array so that everything that indexes, splits, resamples or cross-fits rows (``X[rows]``, ``y[rows]``) works on
them unchanged. ``np.array(list_of_arrays, dtype=object)`` would build a 3-D array when the lengths happen to be
equal, so ``ragged`` fills an empty object array instead."""

from __future__ import annotations

import numpy as np


def ragged(parts) -> np.ndarray:
    parts = list(parts)
    out = np.empty(len(parts), dtype=object)
    for i, part in enumerate(parts):
        out[i] = part
    return out


def is_ragged(array) -> bool:
    return isinstance(array, np.ndarray) and array.dtype == object and array.ndim == 1


def flat(array: np.ndarray) -> np.ndarray:
    """All rows' parts stacked (words of every sentence, in order); a plain array as it is."""
    if not is_ragged(array):
        return np.asarray(array)
    if len(array) == 0:
        return np.empty((0,))
    return np.concatenate([np.asarray(part) for part in array])


def lengths(array: np.ndarray) -> np.ndarray:
    return np.fromiter((len(part) for part in array), dtype=np.int64, count=len(array))


def split_like(values: np.ndarray, sizes) -> np.ndarray:
    """``values`` (stacked parts) cut back into rows of ``sizes``."""
    bounds = np.cumsum([0, *sizes])
    return ragged(values[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
