"""LEEP: the log expected empirical prediction of a source classifier's labels for the target labels.

Nguyen, Hassner, Seeger & Archambeau, "LEEP: A New Measure to Evaluate Transferability of Learned
Representations", ICML 2020 (arXiv:2002.12462).
"""

from __future__ import annotations

import numpy as np

from graftkit.errors import DataError
from graftkit.selection.inputs import as_features, as_labels


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float64, shifted by the row maximum so large logits do not overflow."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_probabilities(probabilities, name: str = "source probabilities") -> np.ndarray:
    theta = as_features(probabilities, name)
    if (theta < 0).any() or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-6):
        raise DataError(f"{name} must be non-negative rows that sum to 1 (softmax of the source logits); "
                        f"row sums range {theta.sum(axis=1).min():.4g} to {theta.sum(axis=1).max():.4g}")
    return theta


def leep(source_probabilities, labels) -> float:
    """LEEP (Nguyen et al., ICML 2020), higher = more transferable.

    With ``theta`` the source model's class probabilities on the target examples (n x Z), the empirical
    joint ``P(y, z) = 1/n sum_{i: y_i = y} theta_iz``, the conditional ``P(y | z) = P(y, z) / P(z)``, and
    ``LEEP = 1/n sum_i log sum_z P(y_i | z) theta_iz``: the log-likelihood of the "expected empirical
    predictor" that relabels the source classes through ``P(y | z)``.
    """
    theta = check_probabilities(source_probabilities)
    _, codes = as_labels(labels, len(theta))
    n = len(theta)
    joint = np.zeros((int(codes.max()) + 1, theta.shape[1]))
    np.add.at(joint, codes, theta)
    joint /= n
    marginal = joint.sum(axis=0)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = np.einsum("iz,iz->i", theta, conditional[codes])  # sum_z P(y_i | z) theta_iz
    return float(np.mean(np.log(np.maximum(expected, np.finfo(np.float64).tiny))))
