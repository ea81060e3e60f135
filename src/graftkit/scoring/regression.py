"""Regression scores on plain arrays (RMSE, MAE, R², Spearman) and split-conformal prediction intervals.

Split conformal prediction (Vovk, Gammerman & Shafer 2005; Lei et al. 2018, "Distribution-Free Predictive
Inference for Regression"): with ``n`` held-out absolute residuals, the interval ``prediction ± q`` where ``q`` is
the ``ceil((n + 1) · level)``-th smallest residual covers a new row's target with probability at least
``level`` when the rows are exchangeable.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from graftkit.errors import ConfigError


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict:
    y, predicted = np.asarray(y, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    constant = np.ptp(y) == 0 or np.ptp(predicted) == 0
    return {"n": int(len(y)),
            "rmse": float(math.sqrt(mean_squared_error(y, predicted))),
            "mae": float(mean_absolute_error(y, predicted)),
            "r2": float(r2_score(y, predicted)) if len(y) > 1 else None,
            "spearman": None if constant or len(y) < 2 else float(spearmanr(y, predicted).statistic)}


def check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ConfigError(f"the interval level must be a fraction between 0 and 1 (e.g. 0.9); got {level!r} "
                          "(interval= / --interval)")
    return float(level)


def conformal_quantile(residuals, level: float) -> float:
    """The split-conformal half-width at ``level`` from held-out absolute residuals (inf when too few rows)."""
    level = check_level(level)
    scores = np.sort(np.asarray(residuals, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * level)
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


def interval_coverage(y, predicted, half_width: float) -> dict:
    y, predicted = np.asarray(y, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    inside = np.abs(y - predicted) <= half_width
    return {"coverage": float(inside.mean()), "half_width": float(half_width), "mean_width": float(2 * half_width)}
