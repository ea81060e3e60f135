"""Evaluation: metrics and cross-validation, calibration, threshold metrics, baselines and transfer gain,
forgetting, leakage and learning curves. Results are plain data (dicts), rendered elsewhere."""

from graftkit.evaluation.baselines import ClassicalBaseline, run_baseline, transfer_gain
from graftkit.scoring.calibration import (expected_calibration_error, fit_temperature, reliability_diagram,
                                             scaled_probabilities)
from graftkit.evaluation.forgetting import linear_cka, measure_forgetting
from graftkit.evaluation.leakage import drop_leaked, find_leakage, near_duplicates
from graftkit.evaluation.learning_curve import measure_learning_curve
from graftkit.scoring.metrics import classification_metrics
from graftkit.evaluation.suite import evaluate_model, read_evaluation, save_evaluation
from graftkit.scoring.thresholds import precision_at_recall, recall_at_precision, threshold_metrics
from graftkit.evaluation.transfer import scratch_baseline

__all__ = ["ClassicalBaseline", "classification_metrics", "drop_leaked", "evaluate_model", "expected_calibration_error",
           "find_leakage", "fit_temperature", "linear_cka", "measure_forgetting", "measure_learning_curve", "near_duplicates",
           "precision_at_recall", "read_evaluation", "recall_at_precision", "reliability_diagram", "run_baseline",
           "save_evaluation", "scaled_probabilities", "scratch_baseline", "threshold_metrics", "transfer_gain"]
