"""H-score: how much of the feature covariance the class-conditional means explain.

Bao, Li, Huang, Wang, Zamir & Guibas, "An Information-Theoretic Approach to Transferability in Task
Transfer Learning", ICIP 2019. Shrinkage variant: Ibrahim, Ponomareva & Mazumder, "Newer is not always
better: Rethinking transferability metrics, their peculiarities, stability and performance", ECML-PKDD 2022
(arXiv:2110.06893).
"""

from __future__ import annotations

import numpy as np

from graftkit.selection.inputs import as_features, as_labels


def _between_class(f: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``cov(E[f | y])``: the covariance of each example's class mean (1/n normalisation; f centred)."""
    classes = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=classes).astype(np.float64)
    means = np.zeros((classes, f.shape[1]))
    np.add.at(means, codes, f)
    means /= counts[:, None]
    weighted = means * np.sqrt(counts / len(f))[:, None]
    return weighted.T @ weighted


def h_score(features, labels, *, shrinkage: bool = False) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``, higher = more transferable.

    The plain covariance inverse is a pseudo-inverse that drops eigenvalues below the usual rank tolerance
    (largest * d * machine epsilon); it is unstable when features are wide against the sample. With
    ``shrinkage=True`` (Ibrahim et al., 2022) the covariance is the Ledoit-Wolf estimate
    ``(1 - a) S + a mu I`` and the between-class covariance is scaled by ``(1 - a)`` to match:
    ``tr(cov_a(f)^-1 (1 - a) cov(E[f | y]))``.
    """
    f = as_features(features)
    _, codes = as_labels(labels, len(f))
    f = f - f.mean(axis=0, keepdims=True)
    between = _between_class(f, codes)
    if shrinkage:
        from sklearn.covariance import ledoit_wolf

        covariance, a = ledoit_wolf(f, assume_centered=True)
        return float(np.trace(np.linalg.solve(covariance, (1.0 - a) * between)))
    covariance = f.T @ f / len(f)
    eigenvalues, vectors = np.linalg.eigh(covariance)
    cutoff = max(eigenvalues.max(), 0.0) * covariance.shape[0] * np.finfo(np.float64).eps
    keep = eigenvalues > cutoff
    inverse = (vectors[:, keep] / eigenvalues[keep]) @ vectors[:, keep].T
    return float(np.sum(inverse * between))  # tr(A B) for symmetric A, B
