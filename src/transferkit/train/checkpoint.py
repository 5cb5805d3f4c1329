"""Checkpoints: safetensors weights plus a JSON sidecar, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["CheckpointError", "atomic_write_bytes", "load_checkpoint", "read_sidecar", "save_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged or does not fit."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(stem: Path, model: nn.Module, meta: dict) -> Path:
    """Save `model`'s weights to `<stem>.safetensors` and `meta` to `<stem>.json`.

    Raises:
        CheckpointError: If any weight is NaN or infinite (a broken model never replaces a good one).
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"not saving {stem.name}: non-finite values in {', '.join(bad[:5])}")
    weights = stem.with_suffix(".safetensors")
    fd, tmp = tempfile.mkstemp(prefix=f".{weights.name}.", dir=weights.parent)
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, weights)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(meta, indent=2, default=str).encode())
    return weights


def read_sidecar(stem: Path) -> dict:
    path = stem.with_suffix(".json")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint metadata not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({exc})") from exc


def load_checkpoint(stem: Path, model: nn.Module) -> dict:
    """Load `<stem>.safetensors` into `model` (strictly) and return the sidecar metadata."""
    meta = read_sidecar(stem)
    path = stem.with_suffix(".safetensors")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{path}: cannot be read ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the model described by its metadata: {exc}") from exc
    return meta
