"""Classification metrics: accuracy, macro-F1, per-class precision / recall / F1, confusion matrix."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "per_class": [
            {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        ],
        "confusion_matrix": {"labels": list(labels), "matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist()},
    }


def summarize(runs: list[dict], keys=("accuracy", "macro_f1")) -> dict:
    """Mean and sample standard deviation of each metric over folds or repeats."""
    summary = {}
    for key in keys:
        values = np.array([run[key] for run in runs], dtype=float)
        summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                        "values": values.tolist()}
    return summary


def format_table(metrics: dict, top: int = 20) -> str:
    """Plain-text report: headline metrics, then the per-class table (worst F1 first)."""
    lines = [f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   (n={metrics['n']})"]
    rows = sorted(metrics["per_class"], key=lambda r: r["f1"])
    width = max(8, *(len(r["label"]) for r in rows[:top]))
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for r in rows[:top]:
        lines.append(f"{r['label']:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    if len(rows) > top:
        lines.append(f"... {len(rows) - top} more classes (best F1 omitted; --json has them all)")
    return "\n".join(lines)


def probability_metrics(y_true: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, labels, *,
                        temperature: float = 1.0, calibration_status: str = "off", target_recall: float = 0.9,
                        target_precision: float = 0.9, curves: bool = True) -> dict:
    """``classification_metrics`` of the arg-max, plus calibration before (``raw``) and after temperature
    scaling (``calibrated``) and the threshold metrics of the calibrated probabilities, merged per class."""
    from graftkit.scoring.calibration import calibration_report
    from graftkit.scoring.thresholds import threshold_metrics

    metrics = classification_metrics(y_true, calibrated.argmax(axis=1), tuple(labels))
    metrics["calibration"] = {**calibration_report(raw, calibrated, y_true, temperature),
                              "status": calibration_status}
    ranking = threshold_metrics(y_true, calibrated, labels, target_recall=target_recall,
                                target_precision=target_precision, curves=curves)
    for row, extra in zip(metrics["per_class"], ranking.pop("per_class")):
        row.update({k: v for k, v in extra.items() if k != "label"})
    metrics["thresholds"] = ranking
    return metrics
