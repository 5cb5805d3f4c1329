"""What the classical models see: raw pixels (downsampled, flattened) or the frozen backbone's pooled features."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from transferkit.data import ImageSource

__all__ = ["PIXEL_SIDE", "PixelSpec", "pixel_inputs"]

PIXEL_SIDE = 32
"""Raw-pixel inputs are at most this many pixels a side: 1,024 values per grey image, 3,072 in colour."""
_SAMPLE = 32


@dataclass(frozen=True)
class PixelSpec:
    """How images become pixel vectors: the side they are resized to, and grey or colour."""

    side: int
    gray: bool

    @classmethod
    def for_source(cls, source: ImageSource) -> PixelSpec:
        """The native side up to `PIXEL_SIDE`; grey when the sampled images have equal channels."""
        picks = np.linspace(0, len(source) - 1, min(_SAMPLE, len(source))).astype(int)
        images = [np.asarray(source.load(int(i))) for i in picks]
        side = min(PIXEL_SIDE, min(max(image.shape[:2]) for image in images))
        gray = all(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
                   for image in images)  # fmt: skip
        return cls(int(side), bool(gray))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def describe(self) -> str:
        return f"{self.side} x {self.side} {'grey' if self.gray else 'RGB'}"


def pixel_inputs(source: ImageSource, spec: PixelSpec) -> np.ndarray:
    """(N, side * side [* 3]) float32 in [0, 1]: each image resized (box filter: an average, not a subsample)."""
    out = np.empty((len(source), spec.side * spec.side * (1 if spec.gray else 3)), np.float32)
    for i in range(len(source)):
        image = source.load(i).convert("L" if spec.gray else "RGB")
        if image.size != (spec.side, spec.side):
            image = image.resize((spec.side, spec.side), Image.Resampling.BOX)
        out[i] = np.asarray(image, np.float32).reshape(-1) / 255.0
    return out
