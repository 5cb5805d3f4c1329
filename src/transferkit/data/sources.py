"""Labelled image sources: a folder per class, a list file, or IDX arrays such as Fashion-MNIST."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.data._idx import IDX_UBYTE_IMAGES, IDX_UBYTE_LABELS, read_idx
from transferkit.data._listfile import read_list_file, resolve_labels
from transferkit.data.errors import DataError
from transferkit.data.images import IMAGE_EXTENSIONS, array_to_rgb, open_regular, open_rgb

__all__ = [
    "FASHION_MNIST_CLASSES",
    "ImageSource",
    "fashion_mnist",
    "from_folder",
    "from_idx",
    "from_list",
]

logger = logging.getLogger(__name__)

FASHION_MNIST_CLASSES: list[str] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
"""Fashion-MNIST class names, in label order."""

_SIZE_SAMPLE = 200
# Folder (and list-file) names that say which split, not which dataset: `dig/train` is the dataset `dig`.
_SPLIT_NAMES = {"train", "training", "trainval", "val", "valid", "validation", "test", "testing", "images", "data"}
_FMNIST_PREFIXES = {"train": "train", "test": "t10k"}


# eq and repr are off: comparing arrays with == is ambiguous, and the default repr would print every path.
@dataclass(eq=False, repr=False)
class ImageSource:
    """A labelled set of images, held either as files or as one in-memory uint8 array.

    Exactly one of ``paths`` and ``arrays`` is given. Images are read lazily, one at a time, by
    ``load``.

    Example:
        >>> import numpy as np
        >>> dark, light = np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)
        >>> source = ImageSource(classes=["dark", "light"], labels=np.array([0, 1]), arrays=np.stack([dark, light]))
        >>> len(source), source.class_counts()
        (2, {'dark': 1, 'light': 1})
        >>> source.load(1).getpixel((0, 0))
        (255, 255, 255)
    """

    classes: list[str]
    """Class names; label ``i`` means ``classes[i]``."""
    labels: np.ndarray
    """The class index of each image, int64, shape (N,)."""
    paths: list[Path] | None = None
    """Image files, when the images are on disk."""
    arrays: np.ndarray | None = None
    """Images in memory, uint8, shaped (N, H, W) or (N, H, W, 3)."""
    name: str = ""
    """Where the images came from (a folder, a list file), for messages and reports."""

    def __post_init__(self) -> None:
        where = self.name or "image source"
        self.classes = [str(c) for c in self.classes]
        if not self.classes:
            raise DataError(f"{where}: no classes")
        if len(set(self.classes)) != len(self.classes):
            raise DataError(f"{where}: duplicate class names in {self.classes}")

        labels = np.asarray(self.labels)
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise DataError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
        self.labels = labels.astype(np.int64)

        if (self.paths is None) == (self.arrays is None):
            raise DataError(f"{where}: give exactly one of paths and arrays")
        if self.paths is not None:
            self.paths = [Path(p) for p in self.paths]
            n_images = len(self.paths)
        else:
            self.arrays = np.asarray(self.arrays)
            shape = self.arrays.shape
            if self.arrays.dtype != np.uint8 or not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 3)):
                raise DataError(
                    f"{where}: arrays must be uint8 shaped (N, H, W) or (N, H, W, 3), got {self.arrays.dtype} {shape}"
                )
            n_images = shape[0]
        if n_images != len(self.labels):
            raise DataError(f"{where}: {n_images} images but {len(self.labels)} labels")

        if self.labels.size:
            bad = self.labels[(self.labels < 0) | (self.labels >= len(self.classes))]
            if bad.size:
                raise DataError(f"{where}: label {bad[0]} is out of range for {len(self.classes)} classes")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        kind = "files" if self.paths is not None else "arrays"
        return f"ImageSource(name={self.name!r}, images={len(self)}, classes={len(self.classes)}, {kind})"

    def load(self, i: int) -> Image.Image:
        """Reads image ``i`` as 8-bit RGB.

        Raises:
            DataError: The file cannot be read as an image; the message names it.
        """
        if self.paths is not None:
            return open_rgb(self.paths[i])
        return array_to_rgb(self.arrays[i])

    def subset(self, indices: np.ndarray | list[int]) -> ImageSource:
        """Returns the images at ``indices``, in that order, with the same classes and name."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return ImageSource(
            classes=list(self.classes),
            labels=self.labels[idx],
            paths=None if self.paths is None else [self.paths[j] for j in idx],
            arrays=None if self.arrays is None else self.arrays[idx],
            name=self.name,
        )

    def class_counts(self) -> dict[str, int]:
        """Returns the number of images in each class, in class order, including empty classes."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def describe(self) -> dict:
        """Summarises the source for reports: counts per class and the image sizes in a sample.

        Image sizes are read from up to 200 evenly spaced images, from file headers only, as
        stored (before EXIF rotation). Files that cannot be opened are counted as ``unreadable``.
        """
        return {
            "name": self.name,
            "n_images": len(self),
            "n_classes": len(self.classes),
            "classes": list(self.classes),
            "counts": self.class_counts(),
            "image_sizes": self._size_summary(),
        }

    @property
    def short_name(self) -> str:
        """The dataset's name for run folders: its folder's name, or the parent's when the folder names a
        split (``dig/train`` is ``dig``); a list file's name without the extension (``pets/train.txt`` is
        ``pets``, ``crlf.txt`` is ``crlf``).

        Example:
            >>> import numpy as np
            >>> source = ImageSource(["a"], np.zeros(1, np.int64), arrays=np.zeros((1, 2, 2), np.uint8), name="dig/val")
            >>> source.short_name
            'dig'
        """
        path = Path(self.name or "data")
        base = path.stem if path.is_file() or path.suffix.lower() in (".txt", ".csv", ".lst") else path.name
        if base.lower() in _SPLIT_NAMES and path.parent.name:
            base = path.parent.name
        return base or "data"

    def fingerprint(self, content: bool = False) -> str:
        """Returns a hash that changes when the images, labels or classes change; a key for caches.

        Files are identified by absolute path, size and modification time, not content, so this
        stays cheap for large folders: a file rewritten with the same size and its old modification time kept
        (``cp -p``, ``rsync -t``, two images swapped) goes unnoticed. With `content` each file's bytes are
        hashed instead (reads every file).

        Raises:
            DataError: A file no longer exists.
        """
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(json.dumps(self.classes).encode())
        digest.update(self.labels.astype("<i8").tobytes())
        if self.paths is not None:
            digest.update(b"files")
            for path in self.paths:
                try:
                    key = _file_hash(path) if content else f"{path.stat().st_size}\0{path.stat().st_mtime_ns}"
                except OSError:
                    raise DataError(f"{path}: file not found or unreadable") from None
                digest.update(f"{os.path.abspath(path)}\0{key}\n".encode())
        else:
            digest.update(f"arrays{self.arrays.shape}".encode())
            digest.update(np.ascontiguousarray(self.arrays).reshape(-1))
        return digest.hexdigest()

    def _size_summary(self) -> dict:
        n = len(self)
        picks = np.linspace(0, n, num=min(n, _SIZE_SAMPLE), endpoint=False).astype(np.int64)
        sizes: list[tuple[int, int]] = []
        unreadable = 0
        if self.arrays is not None:
            height, width = self.arrays.shape[1:3]
            sizes = [(int(width), int(height))] * len(picks)
        else:
            for i in picks:
                try:
                    # Image.open reads only the header, which is enough for the size; a FIFO is unreadable.
                    with open_regular(self.paths[i]) as fh, Image.open(fh) as img:
                        sizes.append(img.size)
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                    unreadable += 1
        widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
        return {
            "sampled": len(picks),
            "unreadable": unreadable,
            "min_width": min(widths, default=None),
            "max_width": max(widths, default=None),
            "min_height": min(heights, default=None),
            "max_height": max(heights, default=None),
        }


def from_folder(root: str | Path) -> ImageSource:
    """Reads a folder with one sub-folder of images per class.

    Class names are the sub-folder names, sorted. Images may be nested at any depth under their
    class folder. Hidden files and folders (names starting with ``.``) are ignored, and so are
    files without an image extension (see ``IMAGE_EXTENSIONS``).

    Args:
        root: The folder holding the class folders.

    Raises:
        DataError: ``root`` is missing or has no class folders, or a class folder has no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found" if not root.exists() else f"{root}: not a folder")
    try:
        class_dirs = sorted(
            (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
        )
    except OSError as exc:
        raise DataError(f"{root}: cannot list folder: {exc.strerror}") from None
    if not class_dirs:
        raise DataError(f"{root}: no class folders; expected one sub-folder of images per class")

    paths: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        images = _images_under(class_dir)
        if not images:
            raise DataError(
                f"{class_dir}: class folder has no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        paths += images
        labels += [label] * len(images)
    return ImageSource(
        classes=[d.name for d in class_dirs],
        labels=np.array(labels, dtype=np.int64),
        paths=paths,
        name=os.path.abspath(root),  # absolute: run files name the data for commands run from any folder
    )


def _images_under(folder: Path) -> list[Path]:
    images: list[Path] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        # Hidden folders hold tool metadata (.git, .ipynb_checkpoints), never images to train on.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith("."):
                continue
            if Path(filename).suffix.lower() in IMAGE_EXTENSIONS:
                images.append(Path(dirpath, filename))
            else:
                skipped += 1
    if skipped:
        logger.debug("%s: skipped %d files without an image extension", folder, skipped)
    return sorted(images)


def from_list(
    list_file: str | Path,
    root: str | Path | None = None,
    classes: list[str] | None = None,
    *,
    problems: list[str] | None = None,
    allow_outside_root: bool = False,
) -> ImageSource:
    """Reads a text file of ``<path> <label>`` lines.

    Blank lines and lines starting with ``#`` are skipped. The label is the last
    whitespace-separated field, so paths may contain spaces. A label is a class name or an integer
    class index.

    Without ``classes``, integer labels give classes ``"0"`` to ``"max"``, and names give their
    sorted unique set; a file mixing the two is an error. With ``classes``, a label equal to a class
    name means that class, and any other integer is an index into ``classes``.

    Args:
        list_file: The list file (UTF-8).
        root: The folder that paths are relative to; defaults to the list file's folder.
        classes: The class names, in label order.
        problems: When given, every bad line (malformed, unknown class, missing file) is recorded here and left
            out, instead of the first one raising: ``transferkit check`` lists them all.
        allow_outside_root: Accept paths that lead outside `root` (``../..``, or absolute elsewhere). Refused by
            default: a list file from someone else should not make training read any file on the machine.

    Raises:
        DataError: The list file or a listed image is missing, or a line is malformed or names an
            unknown class. The message names the list file and the line.
    """
    list_file = Path(list_file)
    root = list_file.parent if root is None else Path(root)
    entries = read_list_file(list_file, problems)
    if not entries:
        raise DataError(f"{list_file}: no entries")
    labels, classes = resolve_labels(list_file, entries, classes, problems)

    paths, kept = [], []
    for entry, label in zip(entries, labels, strict=True):
        if label is None:
            continue
        path = root / entry.path
        if not allow_outside_root and not _inside(root, entry.path):
            message = (
                f"{list_file} line {entry.lineno}: {entry.path} is outside the root folder {root} "
                "(pass --allow-outside-root to read it anyway)"
            )
            if problems is None:
                raise DataError(message)
            problems.append(message)
            continue
        if not path.is_file():
            if problems is None:
                raise DataError(f"{list_file} line {entry.lineno}: file not found: {entry.path}")
            problems.append(f"{list_file} line {entry.lineno}: file not found: {entry.path}")
            continue
        paths.append(path)
        kept.append(label)
    return ImageSource(
        classes=classes, labels=np.array(kept, dtype=np.int64), paths=paths, name=os.path.abspath(list_file)
    )


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(root: Path, path: str) -> bool:
    """Whether `path` (relative to `root`, or absolute) names something under `root`, by the path's text alone:
    a symbolic link inside the root may lead anywhere (data folders often are links), ``..`` may not."""
    base = os.path.abspath(root)
    return os.path.commonpath([base, os.path.normpath(os.path.join(base, path))]) == base


def from_idx(images_file: str | Path, labels_file: str | Path, classes: list[str] | None = None) -> ImageSource:
    """Reads an IDX image file and its label file (the MNIST format), plain or gzip-compressed.

    Args:
        images_file: uint8 images, magic number 0x00000803, shape (N, H, W).
        labels_file: uint8 labels, magic number 0x00000801, shape (N,).
        classes: The class names; defaults to ``"0"`` to the largest label.

    Raises:
        DataError: A file is missing, is not the expected IDX type, is truncated, or the two files
            disagree on the number of images.
    """
    images_file, labels_file = Path(images_file), Path(labels_file)
    images = read_idx(images_file, IDX_UBYTE_IMAGES)
    labels = read_idx(labels_file, IDX_UBYTE_LABELS).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels")
    if not len(labels):
        raise DataError(f"{labels_file}: no labels")
    top = int(labels.max())
    if classes is None:
        classes = [str(i) for i in range(top + 1)]
    elif top >= len(classes):
        raise DataError(f"{labels_file}: label {top} is out of range for {len(classes)} classes")
    return ImageSource(classes=list(classes), labels=labels, arrays=images, name=os.path.abspath(images_file))


def fashion_mnist(directory: str | Path, split: str = "train") -> ImageSource:
    """Reads the Fashion-MNIST training or test split from its four IDX files.

    Args:
        directory: The folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).

    Raises:
        ValueError: ``split`` is neither ``"train"`` nor ``"test"``.
        DataError: The split's files are missing or corrupt.
    """
    if split not in _FMNIST_PREFIXES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    prefix = _FMNIST_PREFIXES[split]
    names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    found = [_plain_or_gz(directory / name) for name in names]
    if None in found:
        raise DataError(
            f"{directory}: Fashion-MNIST {split} files not found; expected {names[0]} and {names[1]} (optionally .gz)"
        )
    source = from_idx(found[0], found[1], classes=FASHION_MNIST_CLASSES)
    source.name = f"fashion-mnist/{split}"
    return source


def _plain_or_gz(path: Path) -> Path | None:
    gz = path.with_name(path.name + ".gz")
    return next((p for p in (path, gz) if p.is_file()), None)
