"""Parity of an exported file with the PyTorch model: logit differences, top-1 agreement, speed, size.

The comparison itself (`compare_logits`, `Tolerance`) is the engine layer's; this module reports it for an export.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from transferkit.engines.parity import FP32_TOLERANCE, INT8_TOLERANCE, Tolerance, compare_logits

__all__ = ["FP32_TOLERANCE", "INT8_TOLERANCE", "ParityReport", "Tolerance", "compare_logits", "images_per_second"]


@dataclass
class ParityReport:
    """One exported file measured against the PyTorch model on the same preprocessed images."""

    file: str
    format: str
    precision: str
    n_images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    tolerance: dict
    passed: bool
    file_bytes: int
    images_per_s: float
    images_per_s_batch1: float
    torch_images_per_s: float | None = None
    images_from: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "ok" if self.passed else "OUTSIDE TOLERANCE"
        return (
            f"{self.format} {self.precision} ({Path(self.file).name}, {self.file_bytes / 1e6:.2f} MB): "
            f"top-1 agreement {100 * self.top1_agreement:.2f}% on {self.n_images} images, "
            f"max |logit diff| {self.max_abs_diff:.2e} (mean {self.mean_abs_diff:.2e}); "
            f"{self.images_per_s:.1f} images/s (batch 32), {self.images_per_s_batch1:.1f} images/s (batch 1) "
            f"-> {verdict}"
        )


def images_per_second(run: Callable[[np.ndarray], object], images: np.ndarray, batch_size: int) -> float:
    """Throughput of `run` over `images` in batches (one warm-up batch first, not timed)."""
    if len(images) == 0:
        return float("nan")
    run(images[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        run(images[i : i + batch_size])
    return len(images) / max(time.perf_counter() - start, 1e-9)
