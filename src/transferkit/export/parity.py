"""Parity of an exported file with the PyTorch model: logit differences, top-1 agreement, speed, size."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["FP32_TOLERANCE", "INT8_TOLERANCE", "ParityReport", "Tolerance", "compare_logits", "images_per_second"]


@dataclass(frozen=True)
class Tolerance:
    """How far an export may drift from the PyTorch model before it is refused.

    Attributes:
        min_top1_agreement: Share of images whose top-1 class must match.
        max_abs_diff: Largest allowed absolute logit difference; None means not checked.
    """

    min_top1_agreement: float
    max_abs_diff: float | None


FP32_TOLERANCE = Tolerance(min_top1_agreement=0.995, max_abs_diff=1e-3)
"""fp32 engines compute the same function; differences come only from operator order and kernels."""
INT8_TOLERANCE = Tolerance(min_top1_agreement=0.90, max_abs_diff=None)
"""int8 logits move by design; what matters is that the predicted class rarely does."""


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


def compare_logits(reference: np.ndarray, exported: np.ndarray, tolerance: Tolerance) -> dict:
    """Max and mean absolute logit difference, top-1 agreement, and whether they are within `tolerance`."""
    if reference.shape != exported.shape:
        return {
            "max_abs_diff": float("inf"),
            "mean_abs_diff": float("inf"),
            "top1_agreement": 0.0,
            "passed": False,
        }
    diff = np.abs(reference.astype(np.float64) - exported.astype(np.float64))
    agreement = float((reference.argmax(1) == exported.argmax(1)).mean()) if len(reference) else float("nan")
    max_diff = float(diff.max()) if diff.size else 0.0
    passed = agreement >= tolerance.min_top1_agreement and (
        tolerance.max_abs_diff is None or max_diff <= tolerance.max_abs_diff
    )
    return {
        "max_abs_diff": max_diff,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agreement": agreement,
        "passed": bool(passed),
    }


def images_per_second(run: Callable[[np.ndarray], object], images: np.ndarray, batch_size: int) -> float:
    """Throughput of `run` over `images` in batches (one warm-up batch first, not timed)."""
    if len(images) == 0:
        return float("nan")
    run(images[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        run(images[i : i + batch_size])
    return len(images) / max(time.perf_counter() - start, 1e-9)
