"""Image transforms from a model's `Preprocessing`, and the training size for the images at hand."""

from __future__ import annotations

from torchvision import transforms as T

from transferkit.data.preprocessing import Preprocessing, pad_crop_padding

__all__ = ["AUGMENTATIONS", "auto_image_size", "build_transforms", "pad_crop_padding"]

AUGMENTATIONS = ("resized-crop", "pad-crop")


def build_transforms(
    pre: Preprocessing, *, train: bool, augment: bool = True, augmentation: str = "resized-crop", **options
) -> T.Compose:
    """`pre`'s training transform (`Preprocessing.train_transform`) or its evaluation transform.

    Args:
        pre: The model's preprocessing.
        train: Training transforms (augmented when `augment`).
        augment: Whether training transforms augment at all.
        augmentation: resized-crop or pad-crop (see `Preprocessing.train_transform`).
        options: crop_scale, flip, policy (see `Preprocessing.train_transform`).
    """
    return pre.train_transform(augmentation, augment, **options) if train else pre.eval_transform()


def auto_image_size(source_sizes: dict, backbone_size: int) -> int:
    """Training size for the images at hand: small sources need no 224 px.

    Upsampling a 28 px image to 224 px adds no information but costs ~5x the compute of 96 px. Measured
    on Fashion-MNIST (EfficientNet-Lite0 linear probe, 100 images per class, 2,000 test images):
    64 px 77.5%, 96 px 80.0%, 128 px 81.3%. So sources whose largest side is small get about 3.5x their
    side, rounded to a multiple of 32, at least 64 px and never more than the backbone's own size. Measured again
    end to end (`bench/newcomer.py`, 28 px PNGs, engine auto): 96 / 128 / 160 / 192 px gave 81.0 / 82.4 / 83.75 /
    84.05% in 1.0 / 1.3 / 1.8 / 2.5x the time; accuracy per second is best at 96 px (BENCHMARKS.md).

    Args:
        source_sizes: ``ImageSource.describe()["image_sizes"]`` (max_width / max_height of a sample).
        backbone_size: The backbone's pretrained input size.
    """
    side = max(int(source_sizes.get("max_width") or 0), int(source_sizes.get("max_height") or 0))
    if side == 0 or side * 3.5 >= backbone_size:
        return backbone_size
    return int(min(backbone_size, max(64, 32 * round(side * 3.5 / 32))))
