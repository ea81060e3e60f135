"""Threshold metrics: precision at a chosen recall, recall at a chosen precision, PR and ROC curves and their
areas, for binary tasks (the positive class) and one-vs-rest for every class of a multi-class task, with the
micro-averaged curves (all one-vs-rest decisions pooled) that summarise a multi-class model in one plot.

Computed by scikit-learn (``precision_recall_curve``, ``roc_curve``, ``average_precision_score``,
``roc_auc_score``). Average precision is the step-wise area of Davis & Goadrich 2006 ("The Relationship
Between Precision-Recall and ROC Curves"), not the optimistic trapezoid; ROC AUC after Fawcett 2006.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from graftkit.errors import ConfigError, DataError

MAX_POINTS = 201  # curves kept in results are thinned to at most this many points (enough for a plot)


def _check_target(name: str, value: float) -> float:
    if not 0.0 < float(value) <= 1.0:
        raise ConfigError(f"{name} must be a fraction in (0, 1], e.g. 0.9; got {value!r} (--at-{name.split('_')[-1]})")
    return float(value)


def _thin(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> list[list[float]]:
    """At most ``max_points`` points of the curve ``(x, y)``, evenly spaced along its length (so the steep and the
    flat parts keep their shape however the thresholds crowd), both ends kept."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) > max_points:
        length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
        keep = np.unique(np.searchsorted(length, np.linspace(0.0, length[-1], max_points)).clip(0, len(x) - 1))
        keep = np.unique(np.concatenate([[0], keep, [len(x) - 1]]))
        x, y = x[keep], y[keep]
    return [[round(float(v), 6) for v in x], [round(float(v), 6) for v in y]]


def precision_at_recall(y_true: np.ndarray, scores: np.ndarray, recall: float) -> dict:
    """The best precision among thresholds whose recall is at least ``recall`` (binary ``y_true`` in {0, 1}),
    with that threshold and the recall it reaches. ``None`` values when the class has no positive rows."""
    target = _check_target("target_recall", recall)
    y_true = np.asarray(y_true).astype(int)
    if y_true.sum() == 0:
        return {"target_recall": target, "precision": None, "recall": None, "threshold": None}
    precision, achieved, thresholds = precision_recall_curve(y_true, scores)
    ok = np.flatnonzero(achieved[:-1] >= target - 1e-12)  # the last point (recall 0) has no threshold
    best = ok[np.argmax(precision[ok])]
    return {"target_recall": target, "precision": float(precision[best]), "recall": float(achieved[best]),
            "threshold": float(thresholds[best])}


def recall_at_precision(y_true: np.ndarray, scores: np.ndarray, precision: float) -> dict:
    """The best recall among thresholds whose precision is at least ``precision``; ``recall`` 0 and no
    threshold when no threshold is that precise."""
    target = _check_target("target_precision", precision)
    y_true = np.asarray(y_true).astype(int)
    if y_true.sum() == 0:
        return {"target_precision": target, "recall": None, "precision": None, "threshold": None}
    achieved, recall, thresholds = precision_recall_curve(y_true, scores)
    ok = np.flatnonzero(achieved[:-1] >= target - 1e-12)
    if ok.size == 0:
        return {"target_precision": target, "recall": 0.0, "precision": None, "threshold": None}
    best = ok[np.argmax(recall[ok])]
    return {"target_precision": target, "recall": float(recall[best]), "precision": float(achieved[best]),
            "threshold": float(thresholds[best])}


def binary_curves(y_true: np.ndarray, scores: np.ndarray, max_points: int = MAX_POINTS) -> dict:
    """PR and ROC curves (thinned for storage) with average precision and ROC AUC; ``None`` areas and empty
    curves when ``y_true`` holds only one class (the areas are undefined then)."""
    y_true = np.asarray(y_true).astype(int)
    if y_true.min() == y_true.max():
        return {"average_precision": None, "roc_auc": None, "pr": None, "roc": None, "positives": int(y_true.sum())}
    precision, recall, _ = precision_recall_curve(y_true, scores)
    fpr, tpr, _ = roc_curve(y_true, scores)
    r, p = _thin(recall[::-1], precision[::-1], max_points=max_points)  # recall rising from 0 to 1
    f, t = _thin(fpr, tpr, max_points=max_points)
    return {"average_precision": float(average_precision_score(y_true, scores)),
            "roc_auc": float(roc_auc_score(y_true, scores)), "positives": int(y_true.sum()),
            "pr": {"recall": r, "precision": p}, "roc": {"fpr": f, "tpr": t}}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def threshold_metrics(y_true: np.ndarray, probabilities: np.ndarray, labels, *, target_recall: float = 0.9,
                      target_precision: float = 0.9, curves: bool = True) -> dict:
    """Per class (one-vs-rest): AP, ROC AUC, precision at ``target_recall``, recall at ``target_precision``;
    their macro means; and the curves: of the positive class (``labels[1]``) for a binary task, micro-averaged
    over all one-vs-rest decisions for a multi-class one."""
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(y_true), len(labels)):
        raise DataError(f"threshold metrics: probabilities must have shape ({len(y_true)}, {len(labels)}); got "
                        f"{probabilities.shape}")
    _check_target("target_recall", target_recall)
    _check_target("target_precision", target_precision)
    per_class = []
    for k, label in enumerate(labels):
        positive = (y_true == k).astype(int)
        curve = binary_curves(positive, probabilities[:, k], max_points=2)
        per_class.append({"label": label, "average_precision": curve["average_precision"],
                          "roc_auc": curve["roc_auc"],
                          "precision_at_recall": precision_at_recall(positive, probabilities[:, k], target_recall)["precision"],
                          "recall_at_precision": recall_at_precision(positive, probabilities[:, k], target_precision)["recall"]})
    result = {"target_recall": float(target_recall), "target_precision": float(target_precision),
              "macro": {key: _mean(row[key] for row in per_class)
                        for key in ("average_precision", "roc_auc", "precision_at_recall", "recall_at_precision")},
              "per_class": per_class}
    if len(labels) == 2:
        positive, scores = (y_true == 1).astype(int), probabilities[:, 1]
        result["averaging"] = f"binary: positive class {labels[1]!r}"
    else:
        positive = (y_true[:, None] == np.arange(len(labels))[None, :]).astype(int).ravel()
        scores = probabilities.ravel()
        result["averaging"] = "micro-average over one-vs-rest decisions"
    summary = binary_curves(positive, scores) if curves else binary_curves(positive, scores, max_points=2)
    result.update({"average_precision": summary["average_precision"], "roc_auc": summary["roc_auc"],
                   "precision_at_recall": precision_at_recall(positive, scores, target_recall),
                   "recall_at_precision": recall_at_precision(positive, scores, target_precision)})
    if curves:
        result["curves"] = {"pr": summary["pr"], "roc": summary["roc"]}
    return result
