"""The logger interface, its registry by name, and the set of loggers one run writes to."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import ClassVar

__all__ = [
    "ExperimentLogger",
    "Loggers",
    "TrackingError",
    "logger_names",
    "open_loggers",
    "parse_log",
    "register_logger",
]

EPOCH_FIGURES = ("train_loss", "train_acc", "val_loss", "val_acc", "val_balanced_acc", "val_macro_f1")
"""The per-epoch figures of metrics.jsonl that every logger copies."""


class TrackingError(ValueError):
    """An unknown logger name, or a logger whose package is not installed (the message says what to install)."""


class ExperimentLogger:
    """One tracking tool. Subclass, set `name`, `package` and `install`, implement the three methods, register.

    Args:
        run_dir: The run folder (metrics.jsonl, checkpoints, figures).
        config: The run's resolved configuration (`TrainConfig.to_dict()`), logged as parameters.
    """

    name: ClassVar[str] = ""
    package: ClassVar[str] = ""
    """The module that must be importable (checked before training starts)."""
    install: ClassVar[str] = ""
    """What to install when it is not."""
    copies_run_dir: ClassVar[bool] = False
    """Copies the run folder at the end, so it finishes after the others have written their files there."""

    def __init__(self, run_dir: Path, config: dict) -> None:
        self.run_dir, self.config = Path(run_dir), config

    def log_epoch(self, row: dict, lrs: dict[str, float]) -> None:
        """One epoch: its metrics.jsonl row and the learning rate of each parameter group at its end."""
        raise NotImplementedError

    def finish(self, figures: dict[str, float], images: dict[str, Path]) -> None:
        """The run is over: final figures (best validation, test), PNG figures by name; then close."""
        raise NotImplementedError


_REGISTRY: dict[str, type[ExperimentLogger]] = {}


def register_logger(cls: type[ExperimentLogger]) -> type[ExperimentLogger]:
    """Class decorator: make `cls` available to ``--log`` by its `name` (a duplicate name is an error)."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"logger name {cls.name!r} is empty or already registered")
    _REGISTRY[cls.name] = cls
    return cls


def logger_names() -> tuple[str, ...]:
    """Registered loggers (the package registers its own on import)."""
    return tuple(_REGISTRY)


def parse_log(text: str | None) -> list[str]:
    """The logger names in a ``--log`` value (comma-separated; none for None or ``none``)."""
    names = [n.strip().lower() for n in (text or "").split(",") if n.strip() and n.strip().lower() != "none"]
    unknown = [n for n in names if n not in logger_names()]
    if unknown:
        raise TrackingError(f"log {', '.join(unknown)}: choose from {', '.join(logger_names())} (comma-separated)")
    return list(dict.fromkeys(names))


class Loggers:
    """The loggers of one run, called together; `log_epoch` is the tracker's per-epoch listener."""

    def __init__(self, loggers: list[ExperimentLogger]) -> None:
        self.loggers = loggers
        self.last_confusion: list[list[int]] | None = None

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def log_epoch(self, row: dict, lrs: dict[str, float], confusion: list[list[int]] | None = None) -> None:
        if confusion is not None:
            self.last_confusion = confusion
        for logger in self.loggers:
            logger.log_epoch(row, lrs)

    def finish(self, figures: dict[str, float | None], images: dict[str, Path]) -> None:
        finite = {k: float(v) for k, v in figures.items() if v is not None and math.isfinite(float(v))}
        present = {k: Path(p) for k, p in images.items() if Path(p).is_file()}
        for logger in sorted(self.loggers, key=lambda logger: logger.copies_run_dir):
            logger.finish(finite, present)


def open_loggers(log: str | None, run_dir: str | Path, config: dict) -> Loggers:
    """The loggers ``--log`` names, opened on `run_dir`; a missing package is a `TrackingError` with the fix."""
    chosen = [_REGISTRY[name] for name in parse_log(log)]
    for cls in chosen:
        try:
            importlib.import_module(cls.package)
        except ImportError:
            raise TrackingError(f"--log {cls.name} needs the {cls.package} package: {cls.install}") from None
    return Loggers([cls(Path(run_dir), config) for cls in chosen])
