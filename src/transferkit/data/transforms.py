"""Image transforms built from the backbone's preprocessing configuration."""

from __future__ import annotations

from torchvision import transforms as T

__all__ = ["build_transforms"]

_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


def build_transforms(pre: dict, *, train: bool, augment: bool = True) -> T.Compose:
    """Transforms for training (with optional augmentation) or evaluation.

    Args:
        pre: Preprocessing config: image_size, mean, std, interpolation, crop_pct.
        train: Training transforms (random resized crop + flip when `augment`).
        augment: Whether training transforms augment at all.
    """
    size = int(pre["image_size"])
    interp = _INTERPOLATION.get(pre.get("interpolation", "bilinear"), T.InterpolationMode.BILINEAR)
    normalize = [T.ToTensor(), T.Normalize(pre["mean"], pre["std"])]
    if train and augment:
        # A milder scale range than ImageNet's (0.08, 1): small datasets and short schedules
        # lose more from extreme crops than they gain.
        return T.Compose(
            [T.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=interp), T.RandomHorizontalFlip(), *normalize]
        )
    resize = int(round(size / float(pre.get("crop_pct", 1.0))))
    return T.Compose([T.Resize(resize, interpolation=interp), T.CenterCrop(size), *normalize])
