"""Tasks: what is predicted, as a layer of its own (``base.Task`` is the contract; one module per kind).

``infer_task(table)`` reads the target column(s) and says why it chose its kind; ``task_from_dict`` reads a
manifest's. A new kind is one module that registers itself here.
"""

# registration order is the order ``infer_task`` asks the kinds to claim a target: a tag list per word is
# token classification before a list of labels is multi-label
from graftkit.tasks import classification, token_classification, multilabel, regression, speech_recognition  # noqa: F401
from graftkit.tasks.base import Task
from graftkit.tasks.classification import Classification
from graftkit.tasks.multilabel import MultiLabel
from graftkit.tasks.registry import PLANNED_KINDS, infer_task, task_class, task_from_dict, task_kinds
from graftkit.tasks.regression import Regression
from graftkit.tasks.speech_recognition import SpeechRecognition
from graftkit.tasks.token_classification import TokenClassification

TASK_KINDS = (*task_kinds(), *PLANNED_KINDS)

__all__ = ["Classification", "MultiLabel", "PLANNED_KINDS", "Regression", "SpeechRecognition", "TASK_KINDS", "Task", "TokenClassification", "infer_task",
           "task_class", "task_from_dict", "task_kinds"]
