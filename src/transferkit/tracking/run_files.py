"""Closing a run's loggers with the figures in its folder (drawn where missing)."""

from __future__ import annotations

import json
from pathlib import Path

from transferkit.tracking.base import Loggers

__all__ = ["finish_run"]


def finish_run(loggers: Loggers, run_dir: str | Path, figures: dict[str, float | None], confusion: Path | None) -> None:
    """Close every logger with the run's figures: its curves, the confusion matrix of its evaluation (`confusion`,
    else the last epoch's validation one) and the range test's curve, drawn from the run folder where missing.

    Kept out of the package's ``__init__``: it draws with `transferkit.report`, which the config's check of
    ``--log`` names must not import.
    """
    if not loggers:
        return
    from transferkit.report.plots import plot_confusion, plot_curves
    from transferkit.train.rundir import RunDir

    run = RunDir(Path(run_dir))
    images = {"curves": run.path / "curves.png", "lr_find": run.path / "lr_find.png"}
    if not images["curves"].is_file() and run.metrics():
        plot_curves({run.path.name: run.metrics()}, images["curves"])
    if confusion is None and loggers.last_confusion is not None:
        classes = json.loads((run.path / "classes.json").read_text())
        confusion = plot_confusion(loggers.last_confusion, classes, run.path / "val-confusion.png", "validation")
    if confusion is not None:
        images["confusion"] = confusion
    loggers.finish(figures, images)
