"""Tasks: what is predicted, as a layer of its own (``base.Task`` is the contract; one module per kind).

``infer_task(table)`` reads the target column(s) and says why it chose its kind; ``task_from_dict`` reads a
manifest's. A new kind is one module that registers itself here.
"""

from graftkit.tasks import classification, multilabel, regression  # noqa: F401  (register the kinds)
from graftkit.tasks.base import Task
from graftkit.tasks.classification import Classification
from graftkit.tasks.multilabel import MultiLabel
from graftkit.tasks.registry import PLANNED_KINDS, infer_task, task_class, task_from_dict, task_kinds
from graftkit.tasks.regression import Regression

TASK_KINDS = (*task_kinds(), *PLANNED_KINDS)

__all__ = ["Classification", "MultiLabel", "PLANNED_KINDS", "Regression", "TASK_KINDS", "Task", "infer_task",
           "task_class", "task_from_dict", "task_kinds"]
