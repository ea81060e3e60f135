"""Per-row uncertainty of probabilistic outputs, in [0, 1] (1: least sure), for uncertainty sampling.

- margin (Scheffer et al. 2001): one minus the gap between the two most probable classes; for a label decided
  at a threshold, one minus the probability's distance to that threshold, scaled by the room on its side.
- entropy (Shannon; Settles 2009, "Active Learning Literature Survey", section 3.1): of the class distribution,
  divided by its maximum ``log K``; for independent labels, the mean binary entropy in bits.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def margin_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row of a ``(n, K)`` class distribution."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    top2 = np.sort(p, axis=1)[:, -2:]
    return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)


def entropy_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row's class distribution over ``log K`` (1: uniform)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1.0)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    return np.clip(-(p * np.log(p)).sum(axis=1) / np.log(p.shape[1]), 0.0, 1.0)


def threshold_margin_uncertainty(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per row, the least sure label: ``1 - min_j d_j`` where ``d_j`` is ``p_j``'s distance to its threshold ``t_j``
    over the room on that side (``1 - t_j`` above it, ``t_j`` below), so 0 at the threshold and 1 at 0 or 1."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), p.shape)
    room = np.where(p >= t, 1.0 - t, t)
    distance = np.abs(p - t) / np.maximum(room, EPS)
    return np.clip(1.0 - np.clip(distance, 0.0, 1.0).min(axis=1), 0.0, 1.0)


def binary_entropy_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """Mean over labels of each label's binary entropy in bits (1: every label at 0.5)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1.0 - EPS)
    bits = -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))
    return np.clip(bits.mean(axis=1), 0.0, 1.0)
