"""The strategy advisor: measure a dataset against a backbone, then decide how to fine-tune it.

Example:
    >>> from transferkit.advise import advise
    >>> from transferkit.data import from_folder
    >>> advice = advise(from_folder("data/pets"), "efficientnet_lite0")    # doctest: +SKIP
    >>> print(advice.explain())                                            # doctest: +SKIP
"""

from __future__ import annotations

from transferkit.advise.advice import THRESHOLDS, Advice, decide, partial_depth
from transferkit.advise.logme import log_evidence, logme_score
from transferkit.advise.measure import SAMPLE_IMAGES, Measurements, measure, size_stats
from transferkit.advise.ranking import BackboneScore, available_backbones, rank_backbones
from transferkit.data import ImageSource

__all__ = [
    "SAMPLE_IMAGES",
    "THRESHOLDS",
    "Advice",
    "BackboneScore",
    "Measurements",
    "advise",
    "available_backbones",
    "decide",
    "log_evidence",
    "logme_score",
    "measure",
    "partial_depth",
    "rank_backbones",
    "size_stats",
]


def advise(
    source: ImageSource,
    backbone: str = "efficientnet_lite0",
    *,
    image_size: int | None = None,
    optimizer: str = "adamw",
    sample_images: int = SAMPLE_IMAGES,
    seed: int = 0,
    device: str = "cpu",
) -> Advice:
    """Measure `source` with `backbone` (size, probe, per-stage LogME) and decide the fine-tuning plan."""
    measured = measure(source, backbone, sample_images=sample_images, image_size=image_size, seed=seed, device=device)
    return decide(measured, optimizer)
