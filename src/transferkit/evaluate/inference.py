"""Load a trained run back and run it on images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from transferkit.config import TrainConfig
from transferkit.data import ImageDataset, ImageSource, Preprocessing
from transferkit.evaluate._tta import MirroredSource, average_probabilities, mirrored, run_tta
from transferkit.models import build_model
from transferkit.strategies import get_strategy
from transferkit.train.checkpoint import CheckpointError, checkpoint_problem, load_checkpoint, read_sidecar
from transferkit.train.features import batch_of, cached_features, extract_source_features
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
    from transferkit.baselines.run import is_baseline_run

    if is_baseline_run(run_dir):
        raise CheckpointError(
            f"{run_dir} is a baseline run: it holds a classical scikit-learn model, not a network, so it cannot be "
            "exported or run by predict; `transferkit evaluate` scores it, and its figures are in baseline.json"
        )
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
    run: LoadedRun,
    source: ImageSource,
    *,
    batch_size: int = 64,
    device: torch.device | None = None,
    engine: str | None = None,
    what: str = "",
    tta: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every image in `source` (evaluation preprocessing).

    The backbone runs through the feature path training uses (`transferkit.train.features`): images decoded on
    a background thread, channels-last, inference mode; its pooled features then go through the run's head. A
    run whose backbone stayed frozen (a linear probe) also runs it on the run's engine (``--engine``,
    parity-checked against torch) and through the feature cache, as its training did, so another run or
    evaluation on the same images reads the features back. A model whose logits are not its head applied to
    its pooled features (checked on the first images) runs whole, in eager PyTorch.

    Args:
        engine: torch, onnxruntime, mnn or auto for a frozen backbone; default the run's own setting.
        what: A name for the progress line and the cache log ("test").
        tta: none, or flip: the log of the mean of the softmax of each image and of its mirror (`TrainConfig.tta`);
            default the run's own setting.
    """
    tta = tta or run_tta(run.meta)
    logits, labels = _logits(run, source, batch_size, device, engine, what)
    if tta == "flip":
        flipped, _ = _logits(run, mirrored(source), batch_size, device, engine, f"{what or source.name} mirrored")
        logits = average_probabilities(logits, flipped)
    return logits, labels


def _logits(
    run: LoadedRun, source: ImageSource, batch_size: int, device: torch.device | None, engine: str | None, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    device = device or torch.device("cpu")
    model = run.model.to(device).eval()
    labels = torch.from_numpy(np.asarray(source.labels, np.int64).copy())
    if len(source) == 0 or not _head_on_pooled(model, source, run.preprocessing, device):
        loader = DataLoader(ImageDataset(source, run.preprocessing.eval_transform()), batch_size=batch_size)
        _, _, logits, labels = evaluate_loader(model, loader, nn.CrossEntropyLoss(), device, "predict")
        return logits, labels
    config = run.meta.get("config") or {}
    # A mirrored source has its original's fingerprint: its features must not be read from or written to the cache.
    if _backbone_frozen(run.meta) and device.type == "cpu" and not isinstance(source, MirroredSource):
        features = cached_features(
            model,
            run.meta["backbone"],
            source,
            run.preprocessing,
            cache_dir=config.get("cache_dir"),
            engine=engine or config.get("engine", "torch"),
            batch_size=batch_size,
            what=what or source.name,
            verify=config.get("cache_verify", "stat"),
        )
    else:  # fine-tuned weights: features of this run alone, not worth a cache entry or an engine export
        features = extract_source_features(
            model, source, run.preprocessing, batch_size=batch_size, description=what or "predict"
        )
    with torch.inference_mode():
        logits = model.get_classifier()(torch.from_numpy(np.array(features)).to(device)).float().cpu()
    return logits, labels


def _head_on_pooled(model: nn.Module, source: ImageSource, pre: Preprocessing, device: torch.device) -> bool:
    """Whether the model's logits are its classifier applied to its pooled pre-logits features (timm's split)."""
    if not all(hasattr(model, name) for name in ("forward_features", "forward_head", "get_classifier")):
        return False
    x = batch_of(source, pre, range(min(4, len(source)))).to(device)
    with torch.inference_mode():
        whole = model(x)
        split = model.get_classifier()(model.forward_head(model.forward_features(x), pre_logits=True))
    return whole.shape == split.shape and bool(torch.allclose(whole, split, rtol=1e-4, atol=1e-4))


def _backbone_frozen(meta: dict) -> bool:
    """Whether every phase of the run's strategy kept the whole backbone frozen (its features are the pretrained
    backbone's, shared with every other such run)."""
    try:
        config = TrainConfig.from_dict(meta["config"])
        return all(phase.freeze.backbone for phase in get_strategy(meta["strategy"]).phases(config))
    except (KeyError, TypeError, ValueError):  # an older or foreign sidecar, or a strategy not registered here
        return False
