"""Test-time augmentation: each image scored as given and as its left-right mirror, the probabilities averaged."""

from __future__ import annotations

from dataclasses import fields

import torch
from PIL import Image, ImageOps

from transferkit.data import ImageSource

__all__ = ["MirroredSource", "average_probabilities", "mirrored", "run_tta"]


class MirroredSource(ImageSource):
    """`ImageSource` whose images load left-right mirrored (the same files or arrays, never written anywhere)."""

    def load(self, i: int) -> Image.Image:
        return ImageOps.mirror(super().load(i))


def mirrored(source: ImageSource) -> ImageSource:
    """`source` with every image mirrored left to right as it loads.

    Its fingerprint is the original's, so its features must never go through the feature cache.
    """
    values = {f.name: getattr(source, f.name) for f in fields(source) if f.init}
    return MirroredSource(**{**values, "name": f"{source.name} (mirrored)"})


def average_probabilities(*logits: torch.Tensor) -> torch.Tensor:
    """Log of the mean softmax of `logits`: argmax and softmax of the result give the averaged prediction."""
    probs = torch.stack([x.float().softmax(1) for x in logits]).mean(0)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def run_tta(meta: dict) -> str:
    """The test-time augmentation a run was configured with (``none`` for runs saved before the setting existed)."""
    return (meta.get("config") or {}).get("tta", "none")
