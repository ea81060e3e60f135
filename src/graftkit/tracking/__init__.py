"""Experiment tracking: ``--track mlflow`` on fit / cv / auto and ``track=`` in the Python API."""

from graftkit.tracking.mlflow_tracking import (
    TRACKERS,
    check_tracker,
    log_cv,
    log_model_run,
)

__all__ = ["TRACKERS", "check_tracker", "log_cv", "log_model_run"]
