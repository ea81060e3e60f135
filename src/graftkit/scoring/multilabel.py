"""Multi-label scores on plain arrays: micro / macro / sample F1, subset accuracy, Hamming loss, per-label
precision / recall / F1 / average precision, and per-label decision thresholds tuned for F1."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, hamming_loss, precision_recall_fscore_support


def multilabel_metrics(Y: np.ndarray, P: np.ndarray, thresholds: np.ndarray, names, per_label: bool = True) -> dict:
    """Scores of per-label probabilities ``P`` decided at ``thresholds`` against the 0/1 matrix ``Y``."""
    Y = np.asarray(Y).astype(np.int64)
    predicted = (np.asarray(P) >= np.asarray(thresholds)).astype(np.int64)
    metrics = {
        "n": int(len(Y)),
        "micro_f1": float(f1_score(Y, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y, predicted, average="macro", zero_division=0)),
        "samples_f1": float(_samples_f1(Y, predicted)),
        "subset_accuracy": float((Y == predicted).all(axis=1).mean()),
        "hamming_loss": float(hamming_loss(Y, predicted)),
    }
    if per_label:
        precision, recall, f1, support = precision_recall_fscore_support(Y, predicted, zero_division=0)
        metrics["per_label"] = [
            {"label": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s),
             "threshold": float(t),
             "average_precision": float(average_precision_score(Y[:, j], P[:, j])) if 0 < s < len(Y) else None}
            for j, (name, p, r, f, s, t) in enumerate(zip(names, precision, recall, f1, support, thresholds))]
        metrics["predicted_label_counts"] = {name: int(c) for name, c in zip(names, predicted.sum(axis=0))}
    return metrics


def _samples_f1(Y: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-row F1, where a row with no true and no predicted label scores 1 (it was right)."""
    tp = (Y & predicted).sum(axis=1)
    denominator = Y.sum(axis=1) + predicted.sum(axis=1)
    return float(np.where(denominator == 0, 1.0, 2 * tp / np.maximum(denominator, 1)).mean())


def tune_thresholds(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per label, the threshold that maximises F1 on held-out rows (midpoints between sorted probabilities;
    ties go to the one nearest 0.5). A label without a positive held-out row keeps 0.5, and the notes say so."""
    Y = np.asarray(Y).astype(np.int64)
    thresholds, notes = np.full(Y.shape[1], 0.5), []
    for j in range(Y.shape[1]):
        y, p = Y[:, j], np.asarray(P[:, j], dtype=np.float64)
        positives = int(y.sum())
        if positives == 0 or positives == len(y):
            notes.append(f"label {j}: {'no' if positives == 0 else 'only'} positive held-out rows; threshold 0.5")
            continue
        order = np.argsort(-p)
        ps, ys = p[order], y[order]
        tp = np.cumsum(ys)                      # predicting the top i+1 rows positive
        f1 = 2 * tp / (np.arange(1, len(ys) + 1) + positives)
        distinct = np.r_[ps[1:] < ps[:-1], True]  # cut only between different probabilities
        candidates = np.flatnonzero(distinct)
        cuts = np.array([(ps[i] + ps[i + 1]) / 2 if i + 1 < len(ps) else ps[i] / 2 for i in candidates])
        scores = f1[candidates]
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        thresholds[j] = float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])
    return thresholds, notes
