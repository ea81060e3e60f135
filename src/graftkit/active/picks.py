"""The three ways to choose ``n`` rows, on plain arrays (``suggest`` and ``simulate`` share them).

- ``uncertainty``: the ``n`` rows the model is least sure of (the task's measure on calibrated outputs).
- ``diversity``: k-means with ``k = n`` on the L2-normalised backbone embeddings, the row nearest each centre
  (a core-set-like cover of the pool that needs no model outputs: Sener & Savarese 2018 motivate covering the
  embedding space; k-means centres are the cheap version).
- ``hybrid``: Zhdanov 2019, "Diverse mini-batch Active Learning" (arXiv:1901.05954): keep the ``beta * n`` most
  uncertain rows, cluster those with k-means weighted by uncertainty, take the row nearest each centre: uncertain
  rows that do not repeat one another.

Each pick is ``(position, score, reason)``; positions index the arrays given, best first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

DEFAULT_BETA = 10  # Zhdanov 2019's pre-filter: 10x the batch of the most informative rows


@dataclass(frozen=True)
class Pick:
    position: int
    score: float
    reason: str


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def by_uncertainty(u: np.ndarray, n: int, measure: str) -> list[Pick]:
    """The ``n`` largest uncertainties (ties: the earlier row first)."""
    order = np.argsort(-np.asarray(u, dtype=np.float64), kind="stable")[:n]
    return [Pick(int(i), float(u[i]), f"uncertain: {measure} {u[i]:.3f} (rank {r + 1} of {len(u)})")
            for r, i in enumerate(order)]


def _clusters(X: np.ndarray, k: int, seed: int, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means labels, each cluster's member nearest its centre (-1 for a cluster left empty), and sizes."""
    model = KMeans(n_clusters=k, n_init=3, random_state=seed)
    with warnings.catch_warnings():  # fewer distinct points than k: the missing picks are filled in below
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(X, sample_weight=weights)
    distance = np.linalg.norm(X - model.cluster_centers_[labels], axis=1)
    nearest = np.full(k, -1, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size:
            nearest[c] = members[np.argmin(distance[members])]
    return labels, nearest, np.bincount(labels, minlength=k)


def by_diversity(X: np.ndarray, n: int, seed: int = 0) -> list[Pick]:
    """One row per k-means cluster (``k = n``): the one nearest its centre, larger clusters first; the score is
    the share of the pool its cluster holds."""
    X = _unit(X)
    if n >= len(X):
        return [Pick(i, 1.0 / len(X), "the whole pool (no more rows than asked for)") for i in range(len(X))]
    labels, nearest, sizes = _clusters(X, n, seed)
    order = [c for c in np.argsort(-sizes, kind="stable") if nearest[c] >= 0]
    picks = [Pick(int(nearest[c]), float(sizes[c] / len(X)),
                  f"diverse: nearest the centre of k-means cluster {r + 1} of {n} ({sizes[c]} pool rows)")
             for r, c in enumerate(order)]
    return _fill(picks, np.zeros(len(X)), n, "diverse: filler (the pool has fewer distinct embeddings than asked for)")


def by_hybrid(X: np.ndarray, u: np.ndarray, n: int, measure: str, seed: int = 0,
              beta: int = DEFAULT_BETA) -> list[Pick]:
    """Zhdanov's pre-filter + uncertainty-weighted k-means; picks ordered by uncertainty, score = uncertainty."""
    u = np.asarray(u, dtype=np.float64)
    shortlist = np.argsort(-u, kind="stable")[:min(len(u), beta * n)]
    if n >= len(shortlist):
        return by_uncertainty(u, n, measure)
    weights = np.maximum(u[shortlist], 1e-6)  # k-means needs positive weights; a sure row still counts a little
    labels, nearest, sizes = _clusters(_unit(X[shortlist]), n, seed, weights=weights)
    chosen = [(int(shortlist[nearest[c]]), int(sizes[c])) for c in range(n) if nearest[c] >= 0]
    chosen.sort(key=lambda item: (-u[item[0]], item[0]))
    picks = [Pick(i, float(u[i]), f"uncertain and diverse: {measure} {u[i]:.3f}, nearest the centre of one of {n} "
                                  f"uncertainty-weighted k-means clusters of the {len(shortlist)} least sure rows "
                                  f"({size} of them)")
             for i, size in chosen]
    return _fill(picks, u, n, f"uncertain: {measure} filler (fewer distinct clusters than asked for)")


def _fill(picks: list[Pick], score: np.ndarray, n: int, reason: str) -> list[Pick]:
    """Top up to ``n`` picks with the best-scoring rows not picked yet."""
    taken = {p.position for p in picks}
    for i in np.argsort(-score, kind="stable"):
        if len(picks) >= n:
            break
        if int(i) not in taken:
            picks.append(Pick(int(i), float(score[i]), reason))
            taken.add(int(i))
    return picks
