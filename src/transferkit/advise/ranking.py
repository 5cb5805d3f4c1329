"""Rank backbones for one dataset by the transferability of their frozen features."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.advise.measure import SAMPLE_IMAGES, Measurements, measure
from transferkit.data import ImageSource
from transferkit.models import list_backbones

__all__ = ["BackboneScore", "available_backbones", "rank_backbones"]


@dataclass
class BackboneScore:
    """One backbone's measurements on the dataset; `rank` 1 is the highest LogME."""

    rank: int
    backbone: str
    logme: float
    probe_acc: float | None
    seconds: float
    measurements: Measurements

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "backbone": self.backbone,
            "logme": self.logme,
            "probe_acc": self.probe_acc,
            "seconds": self.seconds,
            "measurements": self.measurements.to_dict(),
        }


def available_backbones() -> list[str]:
    """Registered backbones whose pretrained weights are installed (random-init test backbones excluded)."""
    return [spec.name for spec in list_backbones() if spec.weights is not None and spec.weights.available()]


def rank_backbones(
    source: ImageSource,
    backbones: list[str] | None = None,
    *,
    sample_images: int = SAMPLE_IMAGES,
    image_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> list[BackboneScore]:
    """Measure every backbone on the same stratified sample and sort them by LogME, best first.

    LogME is comparable across backbones on one dataset (You et al. 2021 report a rank correlation with
    fine-tuned accuracy); the probe accuracy is shown beside it as a sanity check.

    Args:
        source: The user's labelled images.
        backbones: Names to rank; default every registered backbone with installed weights.
        sample_images: Images (stratified) each backbone sees.
        image_size: Input size for every backbone; default what training would pick for each.
        seed: Fixes the sample, the same for every backbone.
        device: Where the backbones run.

    Raises:
        ValueError: No backbone to rank.
    """
    names = backbones if backbones is not None else available_backbones()
    if not names:
        raise ValueError("no backbone with installed pretrained weights to rank (see `transferkit backbones`)")
    measured = [
        measure(source, name, sample_images=sample_images, image_size=image_size, seed=seed, device=device)
        for name in names
    ]
    measured.sort(key=lambda m: m.logme if m.logme is not None else float("-inf"), reverse=True)
    return [BackboneScore(i + 1, m.backbone, float(m.logme), m.probe_acc, m.seconds, m) for i, m in enumerate(measured)]
