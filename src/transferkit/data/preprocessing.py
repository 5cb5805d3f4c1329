"""`Preprocessing`: how a backbone expects its images, and every view derived from it."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import torch
from torchvision import transforms as T

__all__ = ["AUGMENT_POLICIES", "INTERPOLATIONS", "Preprocessing", "pad_crop_padding"]

_MODES = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}
INTERPOLATIONS = tuple(_MODES)
"""Resize interpolations by their timm names."""
AUGMENT_POLICIES = ("none", "trivial", "randaugment")
"""Automatic augmentation policies a training transform can add after its crop and flip."""


def _three_floats(name: str, values) -> tuple[float, float, float]:
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        floats = ()
    if len(floats) != 3 or not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{name} must be three finite numbers (RGB), not {values!r}")
    return floats  # type: ignore[return-value]


def pad_crop_padding(image_size: int) -> int:
    """Border for the pad-crop augmentation: an eighth of the side (4 px at 32, as in the usual CIFAR recipe)."""
    return max(1, int(image_size) // 8)


@dataclass(frozen=True)
class Preprocessing:
    """Input size, normalisation, resize interpolation and evaluation crop of a model.

    The evaluation view resizes the short side to `eval_resize` (``image_size / crop_pct``) and centre-crops
    ``image_size``; training views are built from the same values. A run saves `to_dict` as
    ``preprocessing.json``, in its checkpoints' metadata and in every exported file.

    Example:
        >>> pre = Preprocessing(image_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875)
        >>> pre.eval_resize, pre.with_size(64).eval_resize
        (256, 73)
        >>> Preprocessing.from_dict({"image_size": 32, "mean": [0, 0, 0], "std": [1, 1, 1]}).crop_pct
        1.0
    """

    image_size: int
    """Side of the square the model sees, in pixels."""
    mean: tuple[float, float, float]
    """Per-channel mean subtracted after scaling pixels to [0, 1] (RGB)."""
    std: tuple[float, float, float]
    """Per-channel standard deviation divided by after subtracting `mean`."""
    interpolation: str = "bilinear"
    """Resize interpolation: bicubic, bilinear or nearest."""
    crop_pct: float = 1.0
    """Evaluation crop: the centre ``image_size`` of the image resized to ``image_size / crop_pct``."""

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"image_size must be a positive whole number of pixels, not {size!r}")
        object.__setattr__(self, "image_size", int(size))
        for name in ("mean", "std"):
            object.__setattr__(self, name, _three_floats(name, getattr(self, name)))
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, not {self.std!r}")
        if self.interpolation not in _MODES:
            raise ValueError(f"interpolation {self.interpolation!r}: choose one of {', '.join(INTERPOLATIONS)}")
        crop = self.crop_pct
        if isinstance(crop, bool) or not isinstance(crop, numbers.Real) or not (math.isfinite(crop) and crop > 0):
            raise ValueError(f"crop_pct must be a positive number, not {crop!r}")
        object.__setattr__(self, "crop_pct", float(crop))

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        """Read the `to_dict` form (``preprocessing.json``, checkpoint or export metadata); other keys are ignored.

        Files written before crop_pct and interpolation were recorded read as 1.0 and bilinear, which is what
        those versions used.

        Raises:
            ValueError: image_size, mean or std is missing, or a value is invalid.
        """
        missing = [k for k in ("image_size", "mean", "std") if k not in values]
        if missing:
            raise ValueError(f"preprocessing lacks {', '.join(missing)}")
        return cls(
            image_size=values["image_size"],
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            interpolation=values.get("interpolation") or "bilinear",
            crop_pct=values.get("crop_pct", 1.0),
        )

    def to_dict(self) -> dict:
        """The JSON form: image_size, mean and std (lists), interpolation, crop_pct."""
        return {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    def with_size(self, image_size: int) -> Preprocessing:
        """The same preprocessing at another input size."""
        return replace(self, image_size=image_size)

    @property
    def eval_resize(self) -> int:
        """Side the evaluation view resizes to before its centre crop of `image_size`."""
        return int(round(self.image_size / self.crop_pct))

    @property
    def interpolation_mode(self) -> T.InterpolationMode:
        """`interpolation` as torchvision's enum."""
        return _MODES[self.interpolation]

    def geometry(self, crop: bool = True) -> T.Compose:
        """The evaluation view as a PIL image: resize the short side to `eval_resize`, centre-crop `image_size`.

        Args:
            crop: False centre-crops the square of side `eval_resize` instead, the one the evaluation crop is
                the centre of (what the decoded-image cache stores).
        """
        side = self.image_size if crop else self.eval_resize
        return T.Compose([T.Resize(self.eval_resize, interpolation=self.interpolation_mode), T.CenterCrop(side)])

    def eval_transform(self) -> T.Compose:
        """PIL image to the normalised float tensor the model sees at evaluation."""
        return T.Compose([*self.geometry().transforms, *self._to_tensor()])

    def train_transform(
        self,
        augmentation: str = "resized-crop",
        augment: bool = True,
        *,
        crop_scale: float = 0.8,
        flip: bool = True,
        policy: str = "none",
    ) -> T.Compose:
        """PIL image to a normalised float tensor for training.

        Args:
            augmentation: resized-crop (random resized crop of `crop_scale`-100% of the area, flip) or pad-crop (the
                evaluation view padded with black by `pad_crop_padding`, a random crop of the original size, flip).
            augment: False gives the evaluation transform.
            crop_scale: resized-crop: the smallest fraction of the image's area a crop keeps (1: the whole image,
                resized).
            flip: Flip half the images left-right (off where a mirror changes the label, as for digits).
            policy: none, trivial (torchvision's TrivialAugmentWide: one random photometric or geometric operation
                of random strength per image) or randaugment (RandAugment, 2 operations at magnitude 9), after the
                crop.

        Example:
            >>> pre = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
            >>> [type(t).__name__ for t in pre.train_transform(crop_scale=0.8, flip=False, policy="trivial").transforms]
            ['RandomResizedCrop', 'TrivialAugmentWide', 'ToTensor', 'Normalize']
        """
        if not augment:
            return self.eval_transform()
        if not 0 < crop_scale <= 1:
            raise ValueError(f"crop_scale must be in (0, 1], not {crop_scale!r}")
        if policy not in AUGMENT_POLICIES:
            raise ValueError(f"policy {policy!r}: choose one of {', '.join(AUGMENT_POLICIES)}")
        size = self.image_size
        if augmentation == "pad-crop":
            crop = [*self.geometry().transforms, T.RandomCrop(size, padding=pad_crop_padding(size))]
        else:
            # A far milder default scale range than ImageNet's (0.08, 1): small datasets and short schedules lose
            # more from cutting the object off than they gain (0.8 measured better than 0.5, BENCHMARKS.md).
            crop = [T.RandomResizedCrop(size, scale=(crop_scale, 1.0), interpolation=self.interpolation_mode)]
        flips = [T.RandomHorizontalFlip()] if flip else []
        extra = {
            "none": [],
            "trivial": [T.TrivialAugmentWide(interpolation=self.interpolation_mode)],
            "randaugment": [T.RandAugment(interpolation=self.interpolation_mode)],
        }[policy]
        return T.Compose([*crop, *flips, *extra, *self._to_tensor()])

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalise an NCHW batch: uint8 pixels (0-255), or floats already scaled to [0, 1] as ToTensor does.

        Floats take exactly ToTensor + Normalize's arithmetic, so they equal `eval_transform`'s output bit for
        bit; uint8 pixels are shifted and scaled in one step each, in pixel units. A grey batch (N, 1, H, W)
        broadcasts to three channels.
        """
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        if batch.dtype == torch.uint8:
            return (batch.float() - mean * 255) / (std * 255)
        return batch.float().sub(mean).div_(std)

    def _to_tensor(self) -> list:
        return [T.ToTensor(), T.Normalize(self.mean, self.std)]
