"""Calibration: do the predicted probabilities mean what they say?

- Expected calibration error (ECE) over 15 equal-width confidence bins and the reliability diagram (per bin:
  mean confidence, accuracy, count), as in Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern
  Neural Networks" (ICML); reliability diagrams after DeGroot & Fienberg 1983 and Niculescu-Mizil & Caruana
  2005.
- Temperature scaling (Guo et al. 2017): one scalar ``T > 0`` divides the logits, fitted by minimising the
  negative log-likelihood on held-out data. It never changes the arg-max, so accuracy is untouched.
- Negative log-likelihood and the multi-class Brier score (Brier 1950) as proper scoring rules beside ECE.

Everything takes plain arrays and returns plain data (floats, lists, dicts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from graftkit.errors import DataError

N_BINS = 15
# The search range of T. NLL is convex in 1/T, so it has one minimum; an optimum on the lower bound means the
# held-out data were separated without a single confident error, and no finite temperature is meaningful.
T_MIN, T_MAX = 0.05, 100.0


def _check(probabilities: np.ndarray, y: np.ndarray, what: str = "probabilities") -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if probabilities.ndim != 2 or probabilities.shape[0] != y.shape[0]:
        raise DataError(f"calibration: {what} must be an (n, n_classes) array matching {y.shape[0]} labels; got shape "
                        f"{probabilities.shape}")
    if y.size == 0:
        raise DataError("calibration: no examples to measure; pass at least one labelled row")
    if y.min() < 0 or y.max() >= probabilities.shape[1]:
        raise DataError(f"calibration: label ids must lie in 0..{probabilities.shape[1] - 1}; got {y.min()}..{y.max()}")
    return probabilities, y


def reliability_diagram(probabilities: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Per equal-width confidence bin: mean confidence, accuracy and count; with ECE and MCE (Guo et al. 2017).

    ECE = sum over bins of (count / n) * |accuracy - confidence|; MCE is the largest bin gap. Empty bins carry
    ``None`` for confidence and accuracy.
    """
    probabilities, y = _check(probabilities, y)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bins are (lo, hi]; a confidence of exactly 0 can only arise from a degenerate input and goes to bin 0
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins, ece, mce = [], 0.0, 0.0
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        if count:
            mean_confidence = float(confidence[members].mean())
            accuracy = float(correct[members].mean())
            gap = abs(accuracy - mean_confidence)
            ece += count / len(y) * gap
            mce = max(mce, gap)
        else:
            mean_confidence = accuracy = None
        bins.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "confidence": mean_confidence,
                     "accuracy": accuracy, "count": count})
    return {"n_bins": n_bins, "ece": float(ece), "mce": float(mce), "bins": bins}


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (Guo et al. 2017; 15 bins as in that paper)."""
    return reliability_diagram(probabilities, y, n_bins)["ece"]


def negative_log_likelihood(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Mean ``-log p(true class)``; probabilities are clipped at 1e-15 so one certain mistake stays finite."""
    probabilities, y = _check(probabilities, y)
    return float(-np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-15, 1.0)).mean())


def brier_score(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score (Brier 1950): mean over rows of ``sum_k (p_k - [y = k])^2``; 0 is perfect."""
    probabilities, y = _check(probabilities, y)
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((probabilities - onehot) ** 2).sum(axis=1).mean())


def as_logits(logits: np.ndarray) -> np.ndarray:
    """``(n, k)`` logits; scikit-learn's one-column binary form ``z`` becomes ``[0, z]`` (the same softmax)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
    return logits


def scaled_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)``: temperature scaling (Guo et al. 2017) applied to a model's logits."""
    if not temperature > 0:
        raise DataError(f"temperature must be > 0; got {temperature!r}")
    return softmax(as_logits(logits) / temperature, axis=1)


def _nll_at(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())


@dataclass
class TemperatureFit:
    """A fitted temperature and what it did on the data it was fitted on."""

    temperature: float
    status: str          # "fitted", or "skipped: <reason>" (then temperature is 1.0)
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> TemperatureFit:
    """Temperature scaling (Guo et al. 2017): the ``T`` in [0.05, 100] minimising held-out NLL of
    ``softmax(logits / T)``, searched over ``log T`` (Brent's method; NLL is convex in ``1 / T``).

    When the optimum is the lower bound (held-out data separated without a confident error, so NLL keeps
    falling as T shrinks) no finite temperature is meaningful: T stays 1 and the status says why.
    """
    logits = as_logits(logits)
    _, y = _check(logits, y, "logits")
    result = minimize_scalar(lambda log_t: _nll_at(logits, y, float(np.exp(log_t))),
                             bounds=(np.log(T_MIN), np.log(T_MAX)), method="bounded",
                             options={"xatol": 1e-6})
    temperature = float(np.exp(result.x))
    before = scaled_probabilities(logits, 1.0)
    status = "fitted"
    if temperature <= T_MIN * 1.01:
        temperature, status = 1.0, ("skipped: the held-out data are separated with no confident error, so the "
                                    "likelihood has no finite optimum; probabilities are left as the head gives them")
    elif _nll_at(logits, y, temperature) > _nll_at(logits, y, 1.0):  # never worse than no scaling on its own data
        temperature, status = 1.0, "skipped: no temperature improved the held-out likelihood"
    after = scaled_probabilities(logits, temperature)
    return TemperatureFit(temperature=temperature, status=status, n=int(len(y)),
                          nll_before=negative_log_likelihood(before, y), nll_after=negative_log_likelihood(after, y),
                          ece_before=expected_calibration_error(before, y),
                          ece_after=expected_calibration_error(after, y))


def calibration_report(raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray, temperature: float,
                       n_bins: int = N_BINS) -> dict:
    """ECE, NLL and Brier before and after temperature scaling, with both reliability diagrams."""
    before, after = reliability_diagram(raw, y, n_bins), reliability_diagram(calibrated, y, n_bins)
    return {"temperature": float(temperature), "n_bins": n_bins,
            "ece_before": before["ece"], "ece_after": after["ece"],
            "mce_before": before["mce"], "mce_after": after["mce"],
            "nll_before": negative_log_likelihood(raw, y), "nll_after": negative_log_likelihood(calibrated, y),
            "brier_before": brier_score(raw, y), "brier_after": brier_score(calibrated, y),
            "reliability_before": before["bins"], "reliability_after": after["bins"]}
