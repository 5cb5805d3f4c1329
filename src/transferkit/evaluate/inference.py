"""Load a trained run back and run it on images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from transferkit.data import ImageDataset, ImageSource, Preprocessing
from transferkit.models import build_model
from transferkit.train.checkpoint import CheckpointError, checkpoint_problem, load_checkpoint, read_sidecar
from transferkit.train.loop import evaluate_loader

__all__ = ["LoadedRun", "load_run", "run_logits"]


@dataclass
class LoadedRun:
    """A trained model with its classes and preprocessing."""

    model: nn.Module
    classes: list[str]
    preprocessing: Preprocessing
    meta: dict
    run_dir: Path


def load_run(run_dir: str | Path, which: str = "best") -> LoadedRun:
    """Rebuild the model of a run directory from its `best` (or `last`) checkpoint.

    Raises:
        CheckpointError: The checkpoint is missing or damaged; when `best` is and `last` is readable, the
            message says so (``--checkpoint last``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    stem = run_dir / which
    try:
        meta = read_sidecar(stem)
        model = build_model(meta["backbone"], len(meta["classes"]), pretrained=False).model
        load_checkpoint(stem, model)
    except CheckpointError as exc:
        if which == "best" and checkpoint_problem(run_dir / "last") is None:
            raise CheckpointError(f"{exc}; the run's latest weights can be used instead: --checkpoint last") from None
        raise
    model.eval()
    pre = Preprocessing.from_dict(meta["preprocessing"])
    return LoadedRun(model, list(meta["classes"]), pre, meta, run_dir)


def run_logits(
    run: LoadedRun, source: ImageSource, *, batch_size: int = 64, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every image in `source` (evaluation preprocessing)."""
    device = device or torch.device("cpu")
    loader = DataLoader(ImageDataset(source, run.preprocessing.eval_transform()), batch_size=batch_size)
    _, _, logits, labels = evaluate_loader(run.model.to(device), loader, nn.CrossEntropyLoss(), device, "predict")
    return logits, labels
