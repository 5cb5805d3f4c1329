"""Plots and reports."""

from transferkit.report.plots import plot_confusion, plot_curves

__all__ = ["plot_confusion", "plot_curves"]
