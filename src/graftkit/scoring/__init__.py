"""Scores of predictions against targets, on plain arrays: classification metrics, calibration, threshold
metrics (and, in tasks, multi-label and regression metrics). No model, no table: the lowest layer the tasks use."""
