"""Evaluation: metrics and cross-validation. Results are plain data (dicts), rendered elsewhere."""

from graftkit.evaluation.metrics import classification_metrics

__all__ = ["classification_metrics"]
