"""Regression: one numeric target per row.

The target is standardised inside the model (the engine's output layer predicts ``(y - mean) / std`` of the
training rows; the exported head folds it back into target units). The head on frozen features is ridge
regression with its penalty chosen by leave-one-out cross-validation; the engine trains with MSE (or Huber:
``loss="huber"``). Calibration is split-conformal: held-out absolute residuals (the fine-tuning validation
split, the given validation data, or cross-fitted out-of-fold residuals of a frozen-feature head) give
prediction intervals at any level (``interval``, default 0.9), and the evaluation reports their coverage.
Cross-fitted residuals make it a cross-conformal interval (Vovk 2015), whose coverage guarantee is slightly
weaker than the split version's; the evaluation measures it either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from graftkit.data.readers import is_missing_label
from graftkit.errors import ConfigError, DataError
from graftkit.scoring.regression import check_level, conformal_quantile, interval_coverage, regression_metrics
from graftkit.tasks.base import Task
from graftkit.tasks.gbdt import GBDTHead
from graftkit.tasks.heads import RidgeHead
from graftkit.tasks.registry import register_task

LOSSES = ("mse", "huber")
METHOD = "split-conformal intervals (Lei et al. 2018) from held-out absolute residuals"
RESIDUALS_KEPT = 5000  # held-out residuals saved in the manifest (an even subsample beyond that)


def read_numbers(table) -> np.ndarray:
    """The label column as floats; text, blanks, NaN and infinities are refused with the row and column."""
    column = table.label_column
    if isinstance(column, tuple):
        raise DataError(f"{table.source}: a regression target is one column; got {', '.join(column)} (--label)")
    values = table.labels()
    out = np.empty(len(values), dtype=np.float64)
    for position, value in enumerate(values):
        where = table.where(position, column)
        if isinstance(value, list) or value == "":
            raise DataError(f"{where}: the target is {'blank' if value == '' else 'a list'}; a regression target needs "
                            "a number in every row (fill it in, or --drop-missing / drop_missing=True drops such rows)")
        try:
            number = float(value)
        except (TypeError, ValueError):
            hint = "; it reads as a missing value: --drop-missing drops such rows" if is_missing_label(value) else ""
            raise DataError(f"{where}: {value!r:.40} is not a number; a regression target must be numeric (fix the "
                            f"value, drop the row, or use --task classification for categories){hint}") from None
        if not math.isfinite(number):
            raise DataError(f"{where}: the target is {value!r}; a regression target must be a finite number"
                            + ("; it reads as a missing value: --drop-missing drops such rows"
                               if is_missing_label(value) else ""))
        out[position] = number
    return out


def _is_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@register_task
@dataclass(frozen=True)
class Regression(Task):
    kind: ClassVar[str] = "regression"
    primary_metric: ClassVar[str] = "r2"
    headline: ClassVar[tuple[str, ...]] = ("r2", "rmse", "mae", "spearman")
    engine_metrics: ClassVar[tuple[str, ...]] = ("r2", "rmse", "mae", "spearman")
    minimized: ClassVar[tuple[str, ...]] = ("loss", "rmse", "mae")
    has_probabilities: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ("interval", "loss_function")

    target: str = "target"
    interval: float = 0.9       # the default level of prediction intervals
    loss_function: str = "mse"
    reason: str = ""

    def __post_init__(self) -> None:
        check_level(self.interval)
        if self.loss_function not in LOSSES:
            raise ConfigError(f"regression loss must be one of {', '.join(LOSSES)}; got {self.loss_function!r} "
                              "(--regression-loss)")

    @classmethod
    def claims(cls, table, **_) -> str | None:
        if isinstance(table.label_column, tuple):
            return None
        values = table.labels()
        if not values or not all(isinstance(v, str) and _is_number(v) for v in values):
            return None
        numbers = np.array([float(v) for v in values])
        distinct = len(np.unique(numbers))
        if np.any(numbers != np.round(numbers)) and distinct >= 10:
            return (f"task: regression (column {table.label_column!r} holds {distinct} distinct non-integer numbers; "
                    "override with --task classification)")
        return None

    @classmethod
    def infer(cls, table, interval: float = 0.9, loss_function: str = "mse", **_) -> Regression:
        y = read_numbers(table)
        if len(np.unique(y)) < 2:
            raise DataError(f"{table.source}: column {table.label_column!r} has the same value ({y[0]:g}) in all "
                            f"{len(y)} rows; there is nothing to regress")
        return cls(target=str(table.label_column), interval=interval, loss_function=loss_function,
                   reason=f"task: regression (column {table.label_column!r}, {len(y)} values from {y.min():g} to "
                          f"{y.max():g}; given by --task)")

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.target,)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "labels": [self.target], "interval": self.interval,
                "loss_function": self.loss_function}

    @classmethod
    def from_dict(cls, data: dict) -> Regression:
        return cls(target=str(data["labels"][0]), interval=float(data["interval"]),
                   loss_function=str(data["loss_function"]))

    # -- targets -----------------------------------------------------------------------------------------------
    def encode(self, table) -> np.ndarray:
        return read_numbers(table).astype(np.float32)

    def values(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)[:, 0]

    def decode(self, outputs: np.ndarray, calibration: dict | None = None) -> list[float]:
        return [float(v) for v in self.values(outputs)]

    def half_width(self, calibration: dict | None, level: float | None = None) -> float | None:
        residuals = (calibration or {}).get("residuals")
        if not residuals:
            return None
        return conformal_quantile(residuals, self.interval if level is None else level)

    def records(self, outputs: np.ndarray, calibration: dict | None = None, level: float | None = None,
                **_) -> list[dict]:
        values = self.values(outputs)
        q = self.half_width(calibration, level)
        if q is None:
            return [{"prediction": round(float(v), 6)} for v in values]
        return [{"prediction": round(float(v), 6), "lower": round(float(v - q), 6), "upper": round(float(v + q), 6)}
                for v in values]

    def describe_targets(self, y: np.ndarray) -> dict:
        return {"target": {"min": float(y.min()), "max": float(y.max()), "mean": float(y.mean()),
                           "std": float(y.std())}}

    def describe_folds(self) -> str:
        return "stratified by quantile bins of the target; random below 8 rows"

    def strata(self, y: np.ndarray) -> np.ndarray | None:
        """Quantile bins of the target (5, fewer on small data) so every split sees the whole range."""
        bins = min(5, len(y) // 4)
        if bins < 2:
            return None
        return pd.qcut(pd.Series(y).rank(method="first"), bins, labels=False).to_numpy()

    # -- heads and the engine ----------------------------------------------------------------------------------
    def fit_head(self, X, y, *, head: str = "linear", seed: int = 0, C=None, alpha=None, standardize: bool = True,
                 **params):
        if head == "gbdt":  # trees on fused features (tasks/gbdt.py), squared error
            return GBDTHead.fit(X, np.asarray(y, np.float64), classifier=False, seed=seed, **params)
        if head == "mlp":
            raise ConfigError("the mlp head is built for single-label classification; a regression probe uses the "
                              "ridge head (--head linear)")
        return RidgeHead.fit(X, y, alpha=alpha, C=C, standardize=standardize, seed=seed)

    def fit_classical(self, X, y, *, seed: int = 0, **options):
        """The classical baseline's estimator: ridge, alpha by leave-one-out CV."""
        from graftkit.tasks.classical import fit_ridge

        return fit_ridge(X, y, seed=seed)

    def evidence_targets(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return ((y - y.mean()) / (y.std() or 1.0)).reshape(-1, 1)

    def target_scaling(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = float(np.std(y)) or 1.0
        return np.array([np.mean(y)], np.float32), np.array([scale], np.float32)

    def loss(self, z, labels, target_mean, target_scale):
        from torch.nn.functional import huber_loss, mse_loss

        target = (labels.float() - target_mean) / target_scale
        prediction = z.float().reshape(-1)
        return (mse_loss if self.loss_function == "mse" else huber_loss)(prediction, target.reshape(-1))

    def score_engine(self, raw: np.ndarray, y: np.ndarray) -> dict:
        m = regression_metrics(np.asarray(y).reshape(-1), self.values(raw))
        return {k: (m[k] if m[k] is not None else float("nan")) for k in self.engine_metrics}

    # -- calibration and metrics -------------------------------------------------------------------------------
    def fit_calibration(self, raw: np.ndarray, y: np.ndarray, *, scale: bool = True) -> dict:
        residuals = np.sort(np.abs(np.asarray(y, dtype=np.float64).reshape(-1) - self.values(raw)))
        if len(residuals) > RESIDUALS_KEPT:
            residuals = residuals[np.linspace(0, len(residuals) - 1, RESIDUALS_KEPT).round().astype(int)]
        q = conformal_quantile(residuals, self.interval)
        return {"residuals": [float(f"{r:.6g}") for r in residuals], "n": int(len(y)), "interval": self.interval,
                "half_width": q if math.isfinite(q) else None, "status": "fitted", "method": METHOD}

    def skipped_calibration(self, reason: str) -> dict:
        return {"residuals": [], "status": f"skipped: {reason}; no prediction intervals", "method": METHOD,
                "fitted_on": None}

    def outputs(self, raw: np.ndarray, calibration: dict | None) -> np.ndarray:
        return self.values(raw)

    def check_uncertainty(self, measure: str | None = None) -> str:
        """Split-conformal intervals from absolute residuals have one width for every row, so the contract's
        interval ranks no row above another: a regression model is refused here, with the way out."""
        raise ConfigError("a regression model's conformal interval has the same width for every row (one quantile of "
                          "the held-out absolute residuals), so it ranks no row as less sure than another; suggest by "
                          "diversity instead (how='diversity', CLI: --how diversity)")

    def metrics(self, y, raw, calibration, interval: float | None = None, residual_points: int = 400, **_) -> dict:
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        predicted = self.values(raw)
        metrics = regression_metrics(y, predicted)
        level = self.interval if interval is None else check_level(interval)
        q = self.half_width(calibration, level)
        metrics["interval"] = ({"level": level, **interval_coverage(y, predicted, q),
                                "held_out_residuals": (calibration or {}).get("n")} if q is not None and math.isfinite(q)
                               else {"level": level, "skipped": (calibration or {}).get("status", "no calibration")})
        keep = np.linspace(0, len(y) - 1, min(len(y), residual_points)).round().astype(int)
        metrics["residuals"] = {"target": y[keep].tolist(), "predicted": predicted[keep].tolist()}
        return metrics

    def primary(self, y, outputs, calibration: dict | None = None) -> float:
        """R² alone (bootstraps call this thousands of times; ``summary`` also computes Spearman)."""
        from sklearn.metrics import r2_score

        return float(r2_score(np.asarray(y, dtype=np.float64).reshape(-1), self.values(outputs)))

    def summary(self, y, outputs, calibration: dict | None = None) -> dict:
        m = regression_metrics(np.asarray(y).reshape(-1), self.values(outputs))
        return {"n": m["n"], **{k: m[k] for k in self.headline}}

    def describe(self) -> str:
        return f"regression of `{self.target}` ({self.loss_function} loss when fine-tuned)"

    def describe_calibration(self, calibration: dict | None) -> str:
        q = self.half_width(calibration)
        if q is None:
            return f"No prediction intervals: {(calibration or {}).get('status', 'no held-out residuals')}."
        return (f"Predictions come with split-conformal intervals: at level {self.interval:g} the interval is the "
                f"prediction ± {q:.4g}, from {calibration['n']} held-out absolute residuals ({calibration['fitted_on']}); "
                "`predict --interval LEVEL` gives another level. `manifest.json` → `calibration`.")

    def format_metrics(self, metrics: dict, top: int = 20) -> str:
        line = (f"R² {metrics['r2']:.4f}   RMSE {metrics['rmse']:.4f}   MAE {metrics['mae']:.4f}   Spearman "
                f"{metrics['spearman'] if metrics['spearman'] is None else round(metrics['spearman'], 4)}   "
                f"(n={metrics['n']})")
        interval = metrics.get("interval", {})
        if "coverage" in interval:
            line += (f"\n{interval['level']:.0%} prediction interval: ± {interval['half_width']:.4g}, covers "
                     f"{interval['coverage']:.1%} of these rows")
        return line
