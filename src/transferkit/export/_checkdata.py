"""Images to check and calibrate an export with: the run's own validation split, re-created, or given data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from transferkit.data import (
    IMAGE_EXTENSIONS,
    DataError,
    ImageSource,
    fashion_mnist,
    from_folder,
    from_list,
    per_class_subset,
    stratified_split,
)

__all__ = ["CheckData", "image_source", "run_check_data"]

# Where Debian's dataset-fashion-mnist package puts the IDX files; a Fashion-MNIST run records only
# "fashion-mnist/<split>", not the folder it was read from.
_FMNIST_DEFAULT = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class CheckData:
    """Images for the parity check (`check`) and for int8 calibration (`calibration`)."""

    check: ImageSource
    calibration: ImageSource
    origin: str
    calibration_origin: str = ""


def run_check_data(run_dir: Path, data: str | Path | None = None) -> CheckData:
    """The run's validation images (parity) and training images (calibration), or `data` for both.

    The validation split is re-created from `data.json` and `config.yaml` exactly as training made it
    (same source, same per-class subset, same seeded stratified split) and verified against the
    recorded class counts.

    Raises:
        DataError: The run's data cannot be found or re-created and no `data` was given.
    """
    if data is not None:
        source = image_source(data)
        return CheckData(source, source, str(data), str(data))
    try:
        described = json.loads((run_dir / "data.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{run_dir}: cannot read data.json/config.yaml ({exc}); pass --check-data DATA") from None
    try:
        train, val = _recreate(described, config)
    except (DataError, OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"{run_dir}: the run's validation data cannot be re-created ({exc}); "
            "pass --check-data DATA (an image folder, list file or Fashion-MNIST folder)"
        ) from None
    return CheckData(
        val, train, f"validation split of {described['val']['name']}", f"training split of {described['train']['name']}"
    )


def image_source(path: str | Path) -> ImageSource:
    """Images from a folder of class folders, a list file, a Fashion-MNIST IDX folder (test split) or a flat folder."""
    path = Path(path)
    if path.is_file():
        return from_list(path, allow_outside_root=True)  # data a run already trained on
    if not path.is_dir():
        raise DataError(f"{path}: not found")
    if any(path.glob("t10k-images-idx3-ubyte*")):
        return fashion_mnist(path, "test")
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return from_folder(path)
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not images:
        raise DataError(f"{path}: no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return ImageSource(classes=["?"], labels=np.zeros(len(images), np.int64), paths=images, name=str(path))


def _recreate(described: dict, config: dict) -> tuple[ImageSource, ImageSource]:
    train_desc, val_desc = described["train"], described["val"]
    seed, fraction = int(config.get("seed", 0)), float(config.get("val_fraction", 0.2))
    classes = list(train_desc["classes"])
    if val_desc["name"] != train_desc["name"]:
        train = _subset_like(_open(train_desc["name"]), train_desc, seed)
        val = _open(val_desc["name"])
        _verify(val, val_desc)
        return train, val
    full = _open(train_desc["name"])
    if list(full.classes) != classes:
        raise DataError(f"{train_desc['name']} now has classes {full.classes}, the run had {classes}")
    # Training split the (possibly per-class subsetted) source into train and val: undo that.
    total = {c: train_desc["counts"][c] + val_desc["counts"][c] for c in classes}
    full = _subset_like(full, {"counts": total}, seed)
    train_idx, val_idx = stratified_split(full.labels, fraction, seed, names=list(full.classes))
    train, val = full.subset(train_idx), full.subset(val_idx)
    _verify(val, val_desc)
    return train, val


def _open(name: str) -> ImageSource:
    if name.startswith("fashion-mnist/"):
        return fashion_mnist(_FMNIST_DEFAULT, name.split("/", 1)[1])
    path = Path(name)
    if path.is_file():
        return from_list(path, allow_outside_root=True)  # data a run already trained on
    return from_folder(path)


def _subset_like(source: ImageSource, described: dict, seed: int) -> ImageSource:
    """`source`, or the seeded per-class subset of it that training used (`--per-class`)."""
    want = [int(described["counts"][c]) for c in source.classes]
    have = np.bincount(source.labels, minlength=len(source.classes)).tolist()
    if have == want:
        return source
    subset = source.subset(per_class_subset(source.labels, max(want), seed))
    _verify(subset, described)
    return subset


def _verify(source: ImageSource, described: dict) -> None:
    counts = source.class_counts()
    if any(counts.get(c) != n for c, n in described["counts"].items()):
        raise DataError(f"{source.name} no longer matches the run's recorded class counts")
