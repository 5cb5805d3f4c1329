"""Pooled features of a frozen backbone, for training a linear head without re-running the backbone."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit._console import progress
from transferkit.data.feature_cache import FeatureCache
from transferkit.data.preprocessing import Preprocessing
from transferkit.data.sources import ImageSource
from transferkit.engines import feature_runner
from transferkit.engines.features import CHUNK
from transferkit.train._interrupt import stop_if_requested

__all__ = [
    "augmented_features",
    "run_features",
    "batch_of",
    "cached_features",
    "extract_features",
    "extract_source_features",
    "extractor_key",
]


@torch.inference_mode()
def extract_features(
    model: nn.Module, loader: Iterable, device: torch.device, description: str = "features"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the backbone up to its pooled pre-logits features for every batch of `loader`.

    The model stays in eval mode, so BatchNorm uses its pretrained statistics, exactly as a frozen
    backbone does during linear-probe training.
    """
    model.eval()
    feats, labels = [], []
    with progress() as bar:
        task = bar.add_task(description, total=len(loader), status="")
        for inputs, targets in loader:
            stop_if_requested("feature extraction")
            x = model.forward_features(inputs.to(device))
            feats.append(model.forward_head(x, pre_logits=True).float().cpu())
            labels.append(targets)
            bar.update(task, advance=1)
    return torch.cat(feats), torch.cat(labels)


def extractor_key(model: nn.Module, backbone: str, pre: Preprocessing) -> dict:
    """What decides a frozen model's pooled features: backbone, a hash of every non-head weight and buffer
    (BatchNorm statistics included), and the preprocessing (size, mean/std, interpolation, crop)."""
    head = {id(t) for t in model.get_classifier().state_dict(keep_vars=True).values()}
    h = hashlib.sha256()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in head:
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return {
        "backbone": backbone,
        "weights": h.hexdigest()[:32],
        "preprocessing": pre.to_dict(),
        "dim": int(model.num_features),
    }


def extract_source_features(
    model: nn.Module,
    source: ImageSource,
    pre: Preprocessing,
    out: np.ndarray | None = None,
    *,
    engine: str = "torch",
    batch_size: int = 64,
    engine_folder: str | Path | None = None,
    description: str = "features",
) -> np.ndarray:
    """Pooled features of every image of `source`, preprocessed as for evaluation, into `out` (N, dim).

    Images are decoded and resized on a background thread while the previous batch runs, and normalised
    a whole batch at a time. The model runs on the CPU in inference mode, channels-last, or on the engine
    `engine` names (see `transferkit.engines.feature_runner`: onnxruntime, mnn, or auto after a parity check).

    Args:
        out: Array to fill (e.g. a cache entry's memory map); a new one when None.
        engine: torch, onnxruntime, mnn or auto.
        engine_folder: Where exported engine files are kept; default ``<cache>/engines``.
    """
    n, size = len(source), pre.image_size
    if out is None:
        out = np.empty((n, int(model.num_features)), np.float32)
    if n == 0:
        return out
    batches = [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    to_batch = _BatchMaker(source, pre)
    was_training = model.training
    model.eval()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool, progress() as bar:
            pending = pool.submit(to_batch, batches[0])
            first = pending.result()
            if engine != "torch":
                from transferkit.data.feature_cache import cache_root

                folder = Path(engine_folder) if engine_folder else cache_root() / "engines"
                key = extractor_key(model, "", pre)["weights"] + f"-{size}"
                runner = feature_runner(engine, model, size, first[:CHUNK], folder, key)
            else:
                runner = feature_runner("torch", model, size, first, Path("."), "")
            task = bar.add_task(description, total=len(batches), status="")
            pending = None
            for j, rows in enumerate(batches):
                stop_if_requested("feature extraction")
                inputs = first if j == 0 else pending.result()
                if j + 1 < len(batches):
                    pending = pool.submit(to_batch, batches[j + 1])
                out[rows.start : rows.stop] = runner(inputs)
                bar.update(task, advance=1)
    finally:
        model.train(was_training)
    return out


def run_features(model: nn.Module, config, source: ImageSource, pre: Preprocessing, what: str) -> np.ndarray:
    """`cached_features` with a run's settings (`TrainConfig`: backbone, cache folder and check, engine)."""
    return cached_features(
        model, config.backbone, source, pre, cache_dir=config.cache_dir, engine=config.engine, what=what,
        verify=config.cache_verify,
    )  # fmt: skip


def cached_features(
    model: nn.Module,
    backbone: str,
    source: ImageSource,
    pre: Preprocessing,
    *,
    cache_dir: str | Path | None = None,
    engine: str = "torch",
    batch_size: int = 64,
    what: str = "",
    verify: str = "stat",
) -> np.ndarray:
    """`extract_source_features` through the on-disk `FeatureCache`: extracted once, then read back.

    Args:
        verify: How a cache entry is checked against the files: ``stat`` (size and modification time) or ``hash``.

    Returns:
        A read-only (N, dim) float32 memory map, rows in `source` order.
    """
    from transferkit.data.feature_cache import cache_root

    cache = FeatureCache(cache_dir, verify=verify)
    engines = cache_root(cache_dir) / "engines"

    def extract(src: ImageSource, out: np.ndarray) -> None:
        extract_source_features(
            model, src, pre, out, engine=engine, batch_size=batch_size, engine_folder=engines, description=what
        )

    return cache.features(source, extractor_key(model, backbone, pre), extract, what)


def batch_of(source: ImageSource, pre: Preprocessing, rows: range) -> torch.Tensor:
    """Images `rows` of `source` preprocessed for evaluation, one float32 NCHW batch, as the feature path makes it."""
    return _BatchMaker(source, pre)(rows)


@torch.inference_mode()
def augmented_features(
    model: nn.Module,
    source: ImageSource,
    pre: Preprocessing,
    *,
    augmentation: str,
    views: int,
    seed: int,
    batch_size: int = 64,
    **options,
) -> np.ndarray:
    """Pooled features of `views` augmented passes over `source` (rows: pass 1's images in order, then pass 2's...).

    Each pass draws its crops and flips from the training transform under its own seed, in a forked RNG, so the
    features are the same on every call (a resumed run replays them) and the caller's random state is untouched.
    `options` are the transform's other settings (crop_scale, flip, policy: `TrainConfig.augment_options`).
    """
    from transferkit.data.transforms import build_transforms

    transform = build_transforms(pre, train=True, augment=True, augmentation=augmentation, **options)
    was_training = model.training
    model.eval()
    out = np.empty((views * len(source), int(model.num_features)), np.float32)
    rows = [range(i, min(i + batch_size, len(source))) for i in range(0, len(source), batch_size)]
    try:
        with torch.random.fork_rng(devices=[]), progress() as bar:
            task = bar.add_task("augmented features", total=views * len(rows), status="")
            for view in range(views):
                torch.manual_seed(seed * 1000 + view)
                for batch in rows:
                    stop_if_requested("feature extraction")
                    x = torch.stack([transform(source.load(i)) for i in batch]).contiguous(
                        memory_format=torch.channels_last
                    )
                    start = view * len(source)
                    out[start + batch.start : start + batch.stop] = (
                        model.forward_head(model.forward_features(x), pre_logits=True).float().numpy()
                    )
                    bar.update(task, advance=1)
    finally:
        model.train(was_training)
    return out


class _BatchMaker:
    """Evaluation preprocessing of a batch: PIL resize and crop per image, then one normalisation per batch."""

    def __init__(self, source: ImageSource, pre: Preprocessing) -> None:
        self.source, self.pre, self.geometry = source, pre, pre.geometry()

    def __call__(self, rows: range) -> torch.Tensor:
        pixels = np.stack([np.asarray(self.geometry(self.source.load(i))) for i in rows])
        # Scaled to [0, 1] as ToTensor scales, so the features equal those of the evaluation transform bit for bit.
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)
        return self.pre.normalize(x).contiguous()
