"""The HTML report: renders a model directory's saved results (``manifest.json`` + ``evaluation.json``)."""

from graftkit.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
