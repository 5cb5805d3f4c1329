"""Plots, the summary table and the HTML report."""

from transferkit.report._examples import evaluate_and_save, read_examples
from transferkit.report._table import summary_table
from transferkit.report.html import build_report, render_report
from transferkit.report.plots import plot_confusion, plot_curves

__all__ = [
    "build_report",
    "evaluate_and_save",
    "plot_confusion",
    "plot_curves",
    "read_examples",
    "render_report",
    "summary_table",
]
