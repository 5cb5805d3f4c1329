"""Finding runs: which run folder a path means, and what runs a folder holds.

Every command that reads a trained run (evaluate, predict, export, report, train --resume) passes what the
user typed through `resolve_run`, so each accepts the same things: a run folder; a checkpoint file inside
one (``RUN/best.safetensors``); the ``--out`` folder when it holds one run; a compare folder with a
strategy. A folder holding several runs is an error that lists them, newest first, and says how to choose.

Example:
    >>> from transferkit.runs import find_runs, resolve_run
    >>> [run.path.name for run in find_runs("runs")]                    # doctest: +SKIP
    ['pets-full-002', 'pets-linear-probe-001']
    >>> resolve_run("runs/pets-compare-001", strategy="full").path      # doctest: +SKIP
    PosixPath('runs/pets-compare-001/full')
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ResolvedRun", "RunInfo", "RunSelectionError", "find_runs", "is_run_dir", "resolve_run"]

# A run folder holds its settings and at least one of what training writes; compare folders hold compare.json.
_RUN_FILES = ("best.json", "last.json", "summary.json", "metrics.jsonl")
_CHECKPOINTS = ("best", "last")
# out/compare/strategy/fold-k is the deepest layout training writes.
_MAX_DEPTH = 3
_LISTED = 8


class RunSelectionError(ValueError):
    """The path names no run, or several, and the user has to say which."""


@dataclass(frozen=True)
class RunInfo:
    """One run folder, as `transferkit runs` lists it.

    Attributes:
        path: The run folder.
        strategy: Its fine-tuning strategy (from config.yaml).
        backbone: Its backbone.
        best_val_acc: Best validation accuracy (summary.json); None while the first epoch runs.
        test_acc: Test accuracy, when a test set was evaluated after training.
        started: When the run began (its config.yaml was written), seconds since the epoch.
    """

    path: Path
    strategy: str | None
    backbone: str | None
    best_val_acc: float | None
    test_acc: float | None
    started: float

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))

    def describe(self) -> str:
        """One line for messages: path (strategy, backbone, accuracy, date)."""
        acc = f"val {100 * self.best_val_acc:.1f}%" if self.best_val_acc is not None else "no epoch yet"
        return f"{self.path} ({self.strategy or '?'}, {self.backbone or '?'}, {acc}, {self.date})"

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "strategy": self.strategy,
            "backbone": self.backbone,
            "best_val_acc": self.best_val_acc,
            "test_acc": self.test_acc,
            "date": self.date,
        }


@dataclass(frozen=True)
class ResolvedRun:
    """What a path given for a run means.

    Attributes:
        path: The run folder.
        checkpoint: ``best`` or ``last`` when the path named that checkpoint's file, else None.
    """

    path: Path
    checkpoint: str | None = None

    def which(self, asked: str | None) -> str:
        """The checkpoint to use: the one asked for, the one the path named, else ``best``.

        Raises:
            RunSelectionError: The path names one checkpoint and `asked` the other.
        """
        if asked and self.checkpoint and asked != self.checkpoint:
            raise RunSelectionError(
                f"{self.path / self.checkpoint}: that is the {self.checkpoint} checkpoint, but --checkpoint {asked} "
                "was given; pass the run folder with --checkpoint, or the checkpoint file alone"
            )
        return asked or self.checkpoint or "best"


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` is a run folder (training wrote its settings and checkpoints or metrics there)."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in ("config.yaml", *_RUN_FILES))


def find_runs(folder: str | Path) -> list[RunInfo]:
    """The runs in `folder`, newest first: itself if it is one, else the runs below it.

    Compare folders are looked into (their strategy runs and cross-validation folds); a run's own
    sub-folders (eval, export) are not.
    """
    return sorted((_info(p) for p in _run_paths(Path(folder), _MAX_DEPTH)), key=lambda r: r.started, reverse=True)


def resolve_run(path: str | Path, *, strategy: str | None = None) -> ResolvedRun:
    """The run folder `path` means.

    Args:
        path: A run folder; a checkpoint file inside one (``best.safetensors``, ``last.json``, ...); or a
            folder holding runs (``train --out``, a compare folder), which must then hold exactly one run
            (of `strategy`, when given).
        strategy: Choose the run of this strategy (a compare folder holds one per strategy).

    Raises:
        RunSelectionError: The path holds no run, or several: the message lists them, newest first, and
            says how to choose one.
        FileNotFoundError: Nothing exists at `path`.
    """
    path = Path(path)
    if path.is_file() or (not path.exists() and is_run_dir(path.parent)):
        return _checkpoint_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    if is_run_dir(path) and strategy is None:
        return ResolvedRun(path)
    runs = find_runs(path)
    if strategy is not None:
        chosen = [r for r in runs if r.strategy == strategy]
        if not chosen:
            have = sorted({r.strategy for r in runs if r.strategy})
            raise RunSelectionError(
                f"{path} holds no run of strategy {strategy}" + (f" (it has {', '.join(have)})" if have else "")
            )
        runs = chosen
    if len(runs) == 1:
        return ResolvedRun(runs[0].path)
    if not runs:
        raise RunSelectionError(
            f"{path}: not a run folder, nor a compare folder or a folder holding runs (a run folder holds "
            "config.yaml and best.json, a compare folder compare.json)"
        )
    raise RunSelectionError(_several(path, runs, strategy))


def _checkpoint_file(path: Path) -> ResolvedRun:
    stem = path.name.split(".", 1)[0]
    if stem in _CHECKPOINTS and is_run_dir(path.parent):
        return ResolvedRun(path.parent, stem)
    raise RunSelectionError(
        f"{path}: not a run folder nor a checkpoint inside one (best.safetensors or last.safetensors); "
        "pass the run folder"
    )


def _several(path: Path, runs: list[RunInfo], strategy: str | None) -> str:
    listed = "; ".join(r.describe() for r in runs[:_LISTED])
    more = f"; and {len(runs) - _LISTED} more (transferkit runs {path})" if len(runs) > _LISTED else ""
    strategies = {r.strategy for r in runs}
    how = "pass one of these folders"
    if strategy is None and len(strategies) == len(runs):  # one run per strategy: a compare folder
        how += f", or choose with --strategy ({', '.join(sorted(s for s in strategies if s))})"
    return f"{path} holds {len(runs)} runs; {how}. Newest first: {listed}{more}"


def _run_paths(folder: Path, depth: int) -> list[Path]:
    if is_run_dir(folder):
        return [folder]
    if depth == 0 or not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            found += _run_paths(child, depth - 1)
    return found


def _info(path: Path) -> RunInfo:
    config = _read_yaml(path / "config.yaml")
    summary = _read_json(path / "summary.json")
    best = _read_json(path / "best.json")
    started = (path / "config.yaml") if (path / "config.yaml").exists() else path
    return RunInfo(
        path=path,
        strategy=config.get("strategy") or best.get("strategy"),
        backbone=config.get("backbone") or best.get("backbone"),
        best_val_acc=_number(summary.get("best_val_acc")),
        test_acc=_number(summary.get("test_acc")),
        started=started.stat().st_mtime,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or being written: list what can be read
        return {}
    return data if isinstance(data, dict) else {}


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
