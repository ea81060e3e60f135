"""Data in: readers for every supported format, the Table they produce, splits and folds."""

from graftkit.data.readers import load_data
from graftkit.data.table import Table

__all__ = ["Table", "load_data"]
