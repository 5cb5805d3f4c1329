"""Reading back an interrupted run: which checkpoint set, and what changed since."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from rich.markup import escape

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.train.checkpoint import CheckpointError, load_training_state

__all__ = [
    "KEPT_ON_RESUME",
    "ResumePoint",
    "config_changes",
    "kept_changes",
    "read_resume_point",
    "resumed_config",
    "warn",
]

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


KEPT_ON_RESUME = ("backbone", "weights", "image_size", "crop_pct")
"""Settings a resumed run takes from the interrupted one whatever is given: its weights and preprocessing are
in the checkpoint (the model is rebuilt from it, and the preprocessing read from its sidecar)."""


def config_changes(old: dict, new: dict) -> list[str]:
    """`field: old -> new` for every setting that differs and applies to the resumed run."""
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in new
        if old.get(key) != new.get(key) and key not in KEPT_ON_RESUME
    ]


def kept_changes(old: dict, new: dict) -> list[str]:
    """`field old (given: new)` for every setting that differs but stays the interrupted run's (`KEPT_ON_RESUME`)."""
    return [
        f"{key} {old.get(key)!r} (given: {new.get(key)!r})"
        for key in KEPT_ON_RESUME
        if key in old and old.get(key) != new.get(key)
    ]


def resumed_config(config: TrainConfig, point: ResumePoint | None) -> TrainConfig:
    """`config` with the settings a resume cannot change set back to the interrupted run's (`KEPT_ON_RESUME`)."""
    if point is None:
        return config
    old = point.meta["config"]
    kept = {key: old[key] for key in KEPT_ON_RESUME if key in old and old[key] != getattr(config, key)}
    return replace(config, **kept) if kept else config
