"""Active learning: which unlabelled rows to label next (``suggest``), and whether that beats random picks on a
labelled set (``simulate``)."""

from graftkit.active.simulate import simulate
from graftkit.active.suggest import METHODS, Suggestion, suggest

__all__ = ["METHODS", "Suggestion", "simulate", "suggest"]
