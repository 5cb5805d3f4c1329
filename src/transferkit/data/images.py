"""Reading image files of any common format and mode as 8-bit RGB."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from transferkit.data.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "NotRegularFileError", "array_to_rgb", "open_regular", "open_rgb"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
"""Lower-case file suffixes that folder sources treat as images."""

_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


class NotRegularFileError(OSError):
    """The path names a pipe, device, socket or directory: reading it could block forever or never end."""

    def __init__(self, path: str | Path, kind: str) -> None:
        self.reason = f"not a regular file ({kind})"
        super().__init__(f"{path}: {self.reason}")


def open_regular(path: str | Path) -> BinaryIO:
    """Opens `path` for binary reading, only if it is a regular file (a symlink to one is fine).

    Raises:
        NotRegularFileError: it is a FIFO, socket, device or directory.
        OSError: it cannot be opened (FileNotFoundError when missing).
    """
    # O_NONBLOCK: opening a FIFO blocks until a writer appears; checking the open descriptor (not a stat
    # before opening) leaves no window in which the file could be swapped for one.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "an unknown kind of file")
            raise NotRegularFileError(path, kind)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_rgb(path: str | Path) -> Image.Image:
    """Opens an image file and returns it as 8-bit RGB, upright.

    The EXIF orientation is applied, transparent pixels are composited over white, and 16-bit
    images are scaled to 8 bits (divided by 257) rather than clipped. The whole file is decoded
    here, so a truncated file fails now instead of inside a data-loader worker.

    Args:
        path: The image file.

    Returns:
        An RGB image that does not keep the file open.

    Raises:
        DataError: The file is missing, is not a regular file (a FIFO, a device), is not an image, is
            truncated or corrupt, or is too large to decode safely. The message names the path.
    """
    try:
        with open_regular(path) as fh, Image.open(fh) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
    except NotRegularFileError as exc:
        raise DataError(str(exc)) from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({exc})") from None
    # Corrupt files surface from Pillow's plugins as any of these, depending on the format.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    return _to_rgb(upright)


def array_to_rgb(a: np.ndarray) -> Image.Image:
    """Converts an in-memory uint8 image to an RGB image.

    Args:
        a: A uint8 array shaped (H, W) for grey, or (H, W, 3) for RGB.

    Returns:
        An RGB image that does not share memory with ``a``.

    Raises:
        DataError: The array has another dtype or shape.
    """
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise DataError(f"expected a uint8 array shaped (H, W) or (H, W, 3), got {a.dtype} {a.shape}")
    return Image.fromarray(np.ascontiguousarray(a)).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _HIGH_DEPTH_MODES:
        return _scaled_grey(np.asarray(img, dtype=np.float64) / 257.0)
    if img.mode == "F":
        return _scaled_grey(_float_to_8bit_range(np.asarray(img, dtype=np.float64)))
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        # Composite rather than drop alpha: dropping it exposes whatever colour the
        # transparent pixels happen to hold, often black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _float_to_8bit_range(a: np.ndarray) -> np.ndarray:
    # Float images carry no declared range; take the smallest common one that holds the data.
    a = np.nan_to_num(a)
    peak = a.max(initial=0.0)
    if peak <= 1.0:
        return a * 255.0
    if peak <= 255.0:
        return a
    return a / 257.0


def _scaled_grey(a: np.ndarray) -> Image.Image:
    grey = np.rint(np.clip(a, 0.0, 255.0)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
