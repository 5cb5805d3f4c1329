"""Find what is wrong with a dataset before training on it: unreadable images, empty classes, imbalance, leaks.

Training calls `preflight`, which drops unreadable images (and stops when there are too many); the
`transferkit check` command calls `check_sources` to list every problem without training.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from transferkit.data.errors import DataError
from transferkit.data.images import IMAGE_EXTENSIONS, NotRegularFileError, open_regular
from transferkit.data.sources import ImageSource
from transferkit.data.split import stratified_split

__all__ = [
    "IMBALANCE_WARNING",
    "CheckReport",
    "check_sources",
    "content_hash_sets",
    "folder_source",
    "image_problem",
    "preflight",
    "screen",
]

IMBALANCE_WARNING = 10.0
"""Largest / smallest class size above which a warning is given."""

_LISTED = 10  # examples named in one warning line; the full list is in the report
_SHORT = 16  # hex digits of a content hash a run keeps (64 bits: no accidental match among millions of images)


@dataclass
class CheckReport:
    """Every problem found in a dataset's splits.

    Example:
        >>> report = CheckReport()
        >>> report.ok
        True
    """

    errors: list[str] = field(default_factory=list)
    """Problems that stop training or make its result meaningless (unreadable images, empty classes)."""
    warnings: list[str] = field(default_factory=list)
    """Problems worth knowing about (duplicates, leaks between splits, imbalance)."""
    bad_images: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of each image that cannot be used."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Readable images per class, per split."""
    imbalance: dict[str, float] = field(default_factory=dict)
    """Largest / smallest class size, per split."""
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    """Pairs of images with the same content (within or across splits)."""
    fingerprints: dict[str, str] = field(default_factory=dict)
    """Per split, a hash of the readable images' contents and labels, in order (did the data change?)."""
    hashes: dict[str, list[str | None]] = field(default_factory=dict, repr=False)
    """Per split, each readable image's content hash (sha256 of the file, or of an array's pixels)."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "bad_images": [{"path": p, "reason": r} for p, r in self.bad_images],
            "counts": self.counts,
            "imbalance": self.imbalance,
            "duplicates": [list(pair) for pair in self.duplicates],
        }


def image_problem(path: str | Path) -> str | None:
    """Why the image file cannot be used, or None when it decodes.

    Reads the header and checks the pixel count against ``PIL.Image.MAX_IMAGE_PIXELS`` (decompression
    bombs) before decoding; JPEGs decode at reduced scale, which still reads every byte, so truncation
    is found at a fraction of the cost.
    """
    return _inspect(Path(path))[0]


def _inspect(path: Path) -> tuple[str | None, str | None]:
    """(problem or None, sha256 of the content or None)."""
    try:
        with open_regular(path) as fh:
            data = fh.read()
    except NotRegularFileError as exc:
        return exc.reason, None
    except FileNotFoundError:
        return "file not found", None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})", None
    if not data:
        return "empty file (0 bytes)", None
    digest = hashlib.sha256(data).hexdigest()
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if limit and width * height > limit:
                    return (
                        f"{width}x{height} = {width * height:,} pixels, more than the decoding limit {limit:,} "
                        "(PIL.Image.MAX_IMAGE_PIXELS; a possible decompression bomb)"
                    ), digest
                img.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                img.load()
    except UnidentifiedImageError:
        return "not a recognised image format", digest
    except Image.DecompressionBombError as exc:
        return f"too large to decode safely ({exc})", digest
    # Damaged files surface from Pillow's plugins as any of these, depending on the format.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        return f"damaged or truncated image ({exc})", digest
    return None, digest


def _scan(source: ImageSource) -> tuple[dict[int, str], list[str | None]]:
    """Problems by index, and a content hash per image (None where unreadable)."""
    if source.paths is None:
        digests = [hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in source.arrays]
        return {}, digests
    bad: dict[int, str] = {}
    digests: list[str | None] = []
    for i, path in enumerate(source.paths):
        problem, digest = _inspect(path)
        if problem is not None:
            bad[i] = problem
            digest = None
        digests.append(digest)
    return bad, digests


def _name(source: ImageSource, split: str, i: int) -> str:
    return str(source.paths[i]) if source.paths is not None else f"{split}[{i}]"


def _check(
    splits: dict[str, ImageSource], report: CheckReport
) -> tuple[dict[str, ImageSource], dict[str, list[str | None]], int]:
    """Scan every split into `report`; returns the splits without bad images, their hashes, and the total count."""
    clean, hashes, total = {}, {}, 0
    for split, source in splits.items():
        bad, digests = _scan(source)
        total += len(source)
        for i, reason in bad.items():
            report.bad_images.append((_name(source, split, i), reason))
        keep = [i for i in range(len(source)) if i not in bad]
        clean[split] = source.subset(keep) if bad else source
        hashes[split] = [digests[i] for i in keep]
        report.hashes[split] = hashes[split]
        digest = hashlib.sha256(json.dumps([clean[split].classes, hashes[split]]).encode())
        digest.update(clean[split].labels.astype("<i8").tobytes())
        report.fingerprints[split] = digest.hexdigest()
        counts = clean[split].class_counts()
        report.counts[split] = counts
        sizes = [n for n in counts.values() if n]
        if sizes:
            report.imbalance[split] = max(sizes) / min(sizes)
            if report.imbalance[split] > IMBALANCE_WARNING:
                small = min((n, c) for c, n in counts.items() if n)[1]
                big = max((n, c) for c, n in counts.items())[1]
                report.warnings.append(
                    f"{split}: class imbalance {report.imbalance[split]:.1f}:1 ('{big}' {counts[big]} images, "
                    f"'{small}' {counts[small]}); consider more images of the small classes"
                )
        empty = [c for c, n in counts.items() if n == 0]
        if empty and split == "train":
            report.errors.append(f"{split}: no readable images in class(es) {', '.join(empty)}")
        if split == "train" and len(clean[split].classes) < 2:
            report.errors.append(_one_class(clean[split]))
    _duplicates(clean, hashes, report)
    return clean, hashes, total


def _duplicates(clean: dict[str, ImageSource], hashes: dict[str, list[str | None]], report: CheckReport) -> None:
    seen: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for split, digests in hashes.items():
        for i, digest in enumerate(digests):
            if digest is not None:
                seen[digest].append((split, i))
    within: dict[str, list[tuple[str, str]]] = defaultdict(list)
    across: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    conflicts: list[tuple[str, str]] = []
    for places in seen.values():
        first_split, first = places[0]
        for split, i in places[1:]:
            pair = (_name(clean[first_split], first_split, first), _name(clean[split], split, i))
            report.duplicates.append(pair)
            if split == first_split:
                within[split].append(pair)
            else:
                across[(first_split, split)].append(pair)
            if clean[split].labels[i] != clean[first_split].labels[first]:
                conflicts.append(pair)
    for split, pairs in within.items():
        report.warnings.append(f"{split}: {len(pairs)} duplicate image(s) by content: {_pairs(pairs)}")
    for (a, b), pairs in across.items():
        report.warnings.append(
            f"{len(pairs)} image(s) in both {a} and {b} (same content), which inflates {b} accuracy: {_pairs(pairs)}"
        )
    if conflicts:
        report.warnings.append(f"{len(conflicts)} identical image(s) carry different labels: {_pairs(conflicts)}")


def _pairs(pairs: list[tuple[str, str]]) -> str:
    text = "; ".join(f"{a} = {b}" for a, b in pairs[:_LISTED])
    return text + (f"; and {len(pairs) - _LISTED} more" if len(pairs) > _LISTED else "")


def check_sources(splits: dict[str, ImageSource], report: CheckReport | None = None) -> CheckReport:
    """Every problem in the given splits (e.g. ``{"train": ..., "val": ..., "test": ...}``), without training.

    Args:
        splits: Sources by split name; the first is the training data.
        report: A report to add to (e.g. with layout errors found while reading the folders).
    """
    report = report or CheckReport()
    for split, source in splits.items():
        if split != "train" and list(source.classes) != list(splits.get("train", source).classes):
            report.errors.append(f"{split}: classes {source.classes} differ from the training classes")
    _check(splits, report)
    _single_images(splits, report)
    for path, reason in report.bad_images:
        report.errors.append(f"{path}: {reason}")
    return report


def content_hash_sets(report: CheckReport) -> dict[str, list[str]]:
    """Per split, the sorted short content hashes of its images: what a run keeps to recognise its data later."""
    return {split: sorted({h[:_SHORT] for h in hashes if h}) for split, hashes in report.hashes.items()}


def screen(
    source: ImageSource, split: str = "test", known: dict[str, list[str] | set[str]] | None = None
) -> tuple[ImageSource, CheckReport]:
    """The readable images of `source`, and a report naming the others and any image already in a `known` split.

    Args:
        split: What `source` is, for the messages.
        known: Short content hashes by split name (`content_hash_sets` of a run's data): images found in one of
            them are warned about, as evaluating on them inflates the figures.
    """
    report = CheckReport()
    bad, digests = _scan(source)
    report.bad_images = [(_name(source, split, i), reason) for i, reason in bad.items()]
    keep = [i for i in range(len(source)) if i not in bad]
    for name, hashes in (known or {}).items():
        hashes = set(hashes)
        same = [_name(source, split, i) for i in keep if digests[i] and digests[i][:_SHORT] in hashes]
        if same:
            listed = ", ".join(same[:_LISTED]) + (f" and {len(same) - _LISTED} more" if len(same) > _LISTED else "")
            report.warnings.append(
                f"{len(same)} of {len(keep)} {split} image(s) are also in the run's {name} data (same content), "
                f"which inflates the {split} figures: {listed}"
            )
    return (source.subset(keep) if bad else source), report


def _one_class(source: ImageSource) -> str:
    only = f" ({source.classes[0]!r})" if source.classes else ""
    return f"train: only one class{only}: a classifier needs at least 2 classes (one folder or label per class)"


def _require_classes(source: ImageSource) -> None:
    if len(source.classes) < 2:
        raise DataError(_one_class(source))


def _single_images(splits: dict[str, ImageSource], report: CheckReport) -> None:
    """A class with one training image cannot be split off for validation, and hardly learnt from."""
    single = [c for c, n in report.counts.get("train", {}).items() if n == 1]
    if not single:
        return
    named = ", ".join(repr(c) for c in single)
    if "val" in splits:
        report.warnings.append(f"train: class(es) {named} have only 1 image; add images of them")
    else:
        report.errors.append(
            f"train: class(es) {named} have only 1 image; a stratified validation split needs at least 2 per class "
            "(add images, or give a validation set with --val)"
        )


def folder_source(root: str | Path, report: CheckReport) -> ImageSource | None:
    """Like `from_folder`, but an empty class folder is recorded in `report` instead of raised; None if no classes."""
    root = Path(root)
    if not root.is_dir():
        report.errors.append(f"{root}: folder not found")
        return None
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    if not class_dirs:
        report.errors.append(f"{root}: no class folders; expected one sub-folder of images per class")
        return None
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        images = _images_under(class_dir)
        if not images:
            report.errors.append(f"{class_dir}: empty class folder (no image files)")
        paths += images
        labels += [label] * len(images)
    return ImageSource(
        classes=[d.name for d in class_dirs], labels=np.array(labels, np.int64), paths=paths, name=str(root)
    )


def _images_under(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return found


def preflight(
    train: ImageSource,
    val: ImageSource | None,
    *,
    max_bad_fraction: float,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[ImageSource, ImageSource, CheckReport]:
    """The training and validation data a run uses: split if need be, unreadable images dropped.

    Without `val`, a stratified, seeded `val_fraction` of `train` is held out. Each dropped image is named
    in the report; duplicates across the two are warned about.

    Raises:
        ValueError: `val` has other classes than `train`.
        DataError: More than `max_bad_fraction` of the images are unreadable, or a class is left with no
            training images. The message names the first files; `transferkit check` lists them all.
    """
    if val is None:
        _require_classes(train)
        train_idx, val_idx = stratified_split(train.labels, val_fraction, seed, names=list(train.classes))
        train, val = train.subset(train_idx), train.subset(val_idx)
    elif list(val.classes) != list(train.classes):
        raise ValueError(f"validation classes {val.classes} differ from training classes {train.classes}")
    report = CheckReport()
    clean, _, total = _check({"train": train, "val": val}, report)
    n_bad = len(report.bad_images)
    if total and n_bad / total > max_bad_fraction:
        listed = "; ".join(f"{p}: {r}" for p, r in report.bad_images[:5])
        raise DataError(
            f"{n_bad} of {total} images ({100 * n_bad / total:.1f}%) cannot be used, more than max_bad_fraction "
            f"{100 * max_bad_fraction:g}%. First: {listed}. Run `transferkit check` on the data for the full list."
        )
    if report.errors:
        raise DataError("; ".join(report.errors))
    return clean["train"], clean["val"], report
