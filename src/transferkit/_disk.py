"""Free-space checks, so that a full disk is an error naming what was needed and where, not a crash."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

__all__ = ["is_disk_full", "reserve", "size_text", "space_shortfall"]

_FULL = (errno.ENOSPC, errno.EDQUOT)


def size_text(n: float) -> str:
    """A byte count for people: ``512 B``, ``3.1 MB``, ``2.0 GB``."""
    if n < 1000:
        return f"{n:.0f} B"
    value, unit = n / 1000, "KB"
    for bigger in ("MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"


def space_shortfall(folder: Path, need: int) -> str | None:
    """None when `folder`'s filesystem has `need` bytes free, else ``"needs X, Y free in folder"``."""
    free = shutil.disk_usage(folder).free
    if free >= need:
        return None
    return f"needs {size_text(need)}, {size_text(free)} free in {folder}"


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (an OSError, or a library's wrapping of one, like safetensors') means the disk is full."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def reserve(fd: int, size: int) -> None:
    """Allocate `size` bytes of the file's blocks now.

    A memory-mapped file is sparse until its pages are written; on a full disk the write of a page then
    kills the process with SIGBUS. Allocated up front, the same shortage is an ENOSPC here instead.
    """
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without allocation: nothing to do
            return
        raise
