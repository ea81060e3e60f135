"""Transferability estimation: which pretrained backbone (and which layer) to start from, scored on frozen
features in seconds instead of adapting every candidate. One module per estimator; ``rank`` ties them to
backbones, the feature cache and the CLI (``graftkit rank``)."""

from graftkit.selection.hscore import h_score
from graftkit.selection.knn import knn_accuracy
from graftkit.selection.leep import leep
from graftkit.selection.linear import linear_probe_accuracy
from graftkit.selection.logme import logme
from graftkit.selection.nce import nce
from graftkit.selection.rank import SCORES, Ranking, kendall_tau, rank

__all__ = ["SCORES", "Ranking", "h_score", "kendall_tau", "knn_accuracy", "leep", "linear_probe_accuracy", "logme",
           "nce", "rank"]
