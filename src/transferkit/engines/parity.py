"""Does an engine compute what torch computes? Feature agreement for frozen extractors, logit agreement for files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["FP32_TOLERANCE", "INT8_TOLERANCE", "EngineCheck", "Tolerance", "compare_logits"]

_MIN_COSINE = 0.9999
_MIN_TOP1 = 0.99


@dataclass(frozen=True)
class Tolerance:
    """How far an exported classifier may drift from the PyTorch model before it is refused.

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


class EngineCheck:
    """How an engine's pooled features compare with torch's on a sample batch, and how fast it ran it.

    An engine passes when every image's feature vector points the same way as torch's (cosine similarity at
    least 0.9999) and the current head predicts the same class from both for at least 99% of the images.
    """

    def __init__(self, name: str, reference: np.ndarray, features: np.ndarray, head: nn.Module, seconds: float):
        self.name, self.seconds = name, seconds
        self.max_abs_diff = float(np.abs(features - reference).max())
        a, b = torch.from_numpy(reference), torch.from_numpy(np.asarray(features))
        self.min_cosine = float(nn.functional.cosine_similarity(a, b, dim=1).min())
        with torch.inference_mode():
            self.top1 = float((head(a).argmax(1) == head(b).argmax(1)).float().mean())

    @property
    def ok(self) -> bool:
        return self.min_cosine >= _MIN_COSINE and self.top1 >= _MIN_TOP1

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "REJECTED"
        return (
            f"engine {self.name}: max |diff| {self.max_abs_diff:.2e}, min cosine {self.min_cosine:.6f}, "
            f"top-1 agreement {100 * self.top1:.1f}% vs torch; {self.seconds * 1000:.0f} ms/batch ({verdict})"
        )
