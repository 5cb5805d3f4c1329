"""Reading back an interrupted run: which checkpoint set, and what changed since."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.markup import escape

from transferkit._console import console
from transferkit.train.checkpoint import CheckpointError, load_training_state

__all__ = ["ResumePoint", "config_changes", "read_resume_point", "warn"]

_REQUIRED = ("format", "phase_index", "epoch", "progress", "optimizer", "scheduler", "rng", "tracker")
_SET_SUFFIXES = (".state.pt", ".safetensors", ".json")


@dataclass
class ResumePoint:
    """A complete training-state set read from a run directory."""

    stem: Path
    meta: dict
    state: dict
    weights: dict[str, torch.Tensor]


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def read_resume_point(run_path: Path, spec: bool | str | Path) -> ResumePoint:
    """The state to resume `run_path` from.

    Args:
        run_path: The run directory.
        spec: True (or the run directory itself) for its newest complete `last` set, falling back to
            `last.prev` with a warning when `last` is damaged; or one file of a set, read without fallback.
    """
    if spec is True or Path(spec).resolve() == run_path.resolve():
        stem, fallback = run_path / "last", True
    else:
        path = Path(spec)
        name = next((path.name[: -len(s)] for s in _SET_SUFFIXES if path.name.endswith(s)), path.name)
        stem, fallback = path.parent / name, False
    used, meta, state, weights, problems = load_training_state(stem, fallback=fallback)
    for problem in problems:
        warn(f"{problem}; resuming from {used} instead")
    missing = [key for key in _REQUIRED if key not in state]
    if missing or state.get("format") != 1:
        raise CheckpointError(f"{used}.state.pt: not a training state this version can resume (missing {missing})")
    if "classes" not in meta or "config" not in meta:
        raise CheckpointError(f"{used}.json: checkpoint metadata lacks the classes or config")
    return ResumePoint(used, meta, state, weights)


def config_changes(old: dict, new: dict) -> list[str]:
    """`field: old -> new` for every setting that differs."""
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in new if old.get(key) != new.get(key)]
