"""LogME: the log marginal evidence of a Bayesian linear model on frozen features.

You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021
(arXiv:2102.11005); the fixed-point iteration on the SVD follows the authors' reference implementation
(github.com/thuml/LogME, ``LogME._fit_fixed_point``), written on the eigen-decomposition of the smaller Gram
matrix without dividing by singular values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graftkit.selection.inputs import as_features, as_labels

EPSILON = 1e-5  # the reference implementation's guard in the fixed-point updates


@dataclass(frozen=True)
class Evidence:
    """One class's (one target's) maximised evidence per example and the prior / noise precisions reached."""

    evidence: float
    alpha: float
    beta: float
    iterations: int


def _terms(sigma: np.ndarray, z2: np.ndarray, target_norm2: float, lam: float) -> tuple[float, float]:
    """``(||m||^2, ||F m - t||^2)`` for the posterior mean ``m = (F^T F + lam I)^-1 F^T t`` in the eigenbasis of
    ``F^T F`` (eigenvalues ``sigma``), with ``z = V^T F^T t``. No term divides by ``sigma``, so directions with
    tiny or zero eigenvalues cost no precision: ``||m||^2 = sum z^2 / (sigma + lam)^2`` and
    ``||F m - t||^2 = ||t||^2 - sum z^2 (sigma + 2 lam) / (sigma + lam)^2``."""
    shifted = sigma + lam
    m2 = float(np.sum(z2 / shifted ** 2))
    res2 = max(target_norm2 - float(np.sum(z2 * (sigma + 2 * lam) / shifted ** 2)), 0.0)
    return m2, res2


def log_evidence(sigma: np.ndarray, z2: np.ndarray, target_norm2: float, n: int, d: int, alpha: float,
                 beta: float) -> float:
    """``log p(t | F, alpha, beta)`` (Bishop 2006, eq. 3.86): ``d/2 log alpha + n/2 log beta - 1/2 log|A|
    - beta/2 ||F m - t||^2 - alpha/2 ||m||^2 - n/2 log 2 pi`` with ``A = alpha I + beta F^T F``. ``sigma`` holds
    the non-trivial eigenvalues of ``F^T F`` (``k <= d`` of them); the other ``d - k`` count with ``alpha``."""
    m2, res2 = _terms(sigma, z2, target_norm2, alpha / beta)
    log_det = float(np.sum(np.log(alpha + beta * sigma))) + (d - len(sigma)) * math.log(alpha)
    return (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - 0.5 * log_det - beta / 2 * res2 - alpha / 2 * m2
            - n / 2 * math.log(2 * math.pi))


def maximize_evidence(sigma: np.ndarray, z2: np.ndarray, target_norm2: float, n: int, d: int, *,
                      tol: float = 1e-7, max_iter: int = 200) -> Evidence:
    """MacKay's fixed point (as in the LogME reference code): ``gamma = sum sigma / (sigma + alpha / beta)``,
    ``alpha = gamma / ||m||^2``, ``beta = (n - gamma) / ||F m - t||^2`` until ``alpha / beta`` settles (relative
    change below ``tol``), then the evidence at the final precisions, per example."""
    alpha, beta, iteration = 1.0, 1.0, 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        lam = alpha / beta
        gamma = float(np.sum(sigma / (sigma + lam)))
        m2, res2 = _terms(sigma, z2, target_norm2, lam)
        alpha, beta = gamma / (m2 + EPSILON), (n - gamma) / (res2 + EPSILON)
        if abs(alpha / beta - lam) / lam <= tol:
            break
    value = log_evidence(sigma, z2, target_norm2, n, d, alpha, beta) / n
    return Evidence(evidence=value, alpha=alpha, beta=beta, iterations=iteration)


def spectrum(features) -> tuple[np.ndarray, np.ndarray, bool]:
    """Eigen-decomposition of the smaller Gram matrix (``F^T F``, d x d, or ``F F^T``, n x n): the reference
    code's route for tall features, cheaper than an SVD. Returns ``(sigma, vectors, wide)``."""
    f = as_features(features)
    wide = f.shape[1] > f.shape[0]
    sigma, vectors = np.linalg.eigh(f @ f.T if wide else f.T @ f)
    return np.clip(sigma, 0.0, None), vectors, wide


def logme_per_class(features, labels) -> list[Evidence]:
    """The maximised evidence of each one-vs-rest target (class c -> 1.0, others 0.0), classes in sorted order."""
    f = as_features(features)
    _, codes = as_labels(labels, len(f))
    n, d = f.shape
    sigma, vectors, wide = spectrum(f)
    results = []
    for c in range(int(codes.max()) + 1):
        target = (codes == c).astype(np.float64)
        # z = V^T F^T t. Wide: F F^T = U diag(sigma) U^T and z^2 = sigma (U^T t)^2 (d - n directions are null).
        z2 = sigma * (vectors.T @ target) ** 2 if wide else (vectors.T @ (f.T @ target)) ** 2
        results.append(maximize_evidence(sigma, z2, float(target @ target), n, d))
    return results


def logme_targets(features, targets) -> float:
    """LogME on arbitrary real targets (You et al. 2021 define it for regression as well): the mean over the columns
    of ``targets`` (n x k: 0/1 label columns of a multi-label task, a standardised regression target) of the
    maximised log evidence per example."""
    f = as_features(features)
    targets = np.asarray(targets, dtype=np.float64).reshape(len(f), -1)
    n, d = f.shape
    sigma, vectors, wide = spectrum(f)
    values = []
    for target in targets.T:
        z2 = sigma * (vectors.T @ target) ** 2 if wide else (vectors.T @ (f.T @ target)) ** 2
        values.append(maximize_evidence(sigma, z2, float(target @ target), n, d).evidence)
    return float(np.mean(values))


def logme(features, labels) -> float:
    """LogME (You et al., ICML 2021): the mean over classes of the maximised log evidence per example of a
    Bayesian linear regression from the features to the one-hot label. Higher = more transferable.

    Features are used as given (float64), as the paper does. Unlike the reference fixed-point code, the
    log-determinant also counts the ``d - n`` zero singular directions when features are wider than the
    sample (the paper's original algorithm does); with ``n >= d`` the two agree.
    """
    return float(np.mean([e.evidence for e in logme_per_class(features, labels)]))
