"""On-disk cache entries: one `.npy` array plus a JSON record of exactly what it was computed from.

An entry is named by what it is *of* (the sources' paths and labels, the model, the preprocessing), and its
record holds the sources' full fingerprint (sizes and modification times too). So a source file that is
touched or replaced maps to the same entry, which is found stale and rebuilt in place: the cache never
serves an array computed from other files, and it does not grow with every edit of the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transferkit._disk import is_disk_full, reserve, space_shortfall
from transferkit.data.errors import CacheFullError
from transferkit.data.sources import ImageSource

__all__ = ["cache_root", "digest", "load_entry", "source_identity", "write_entry"]

_ENV = "TRANSFERKIT_CACHE"
_SLACK = 64 * 1024  # room for the .npy header and the JSON record beside the array


def cache_root(explicit: str | Path | None = None) -> Path:
    """The cache folder: `explicit`, else ``$TRANSFERKIT_CACHE``, else ``~/.cache/transferkit``."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(_ENV):
        return Path(os.environ[_ENV]).expanduser()
    return Path("~/.cache/transferkit").expanduser()


def digest(value: object) -> str:
    """A stable hash of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def source_identity(source: ImageSource) -> str:
    """What a source *is*, without file sizes and times: classes, labels and absolute paths.

    In-memory arrays have no paths, so their identity is their content fingerprint.
    """
    if source.paths is None:
        return "arrays:" + source.fingerprint()
    h = hashlib.sha256(json.dumps(source.classes).encode())
    h.update(source.labels.astype("<i8").tobytes())
    for path in source.paths:
        h.update(os.path.abspath(path).encode() + b"\n")
    return "files:" + h.hexdigest()[:32]


def load_entry(folder: Path, name: str, expect: dict) -> tuple[str, np.ndarray | None]:
    """Read entry `name` if its record equals `expect`.

    Returns:
        ``("hit", array)`` (memory-mapped, read-only); ``("miss", None)`` when there is no complete entry;
        ``("stale", None)`` when there is one computed from something else (changed files).
    """
    record, array = folder / f"{name}.json", folder / f"{name}.npy"
    try:
        meta = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return "miss", None
    stored = {k: v for k, v in meta.items() if k not in ("shape", "dtype")}
    if stored != json.loads(json.dumps(expect, default=str)):
        return "stale", None
    try:
        data = np.load(array, mmap_mode="r")
    except (OSError, ValueError):
        return "miss", None
    if list(data.shape) != list(meta.get("shape", [])) or str(data.dtype) != meta.get("dtype"):
        return "miss", None
    return "hit", data


def write_entry(
    folder: Path, name: str, meta: dict, shape: tuple[int, ...], dtype: str, fill: Callable[[np.ndarray], None]
) -> np.ndarray:
    """Create entry `name`: `fill` writes the array in place (a memory map, so memory stays bounded).

    The record is written last and both files are renamed into place, so a run killed mid-write leaves
    no entry that looks complete. Returns the finished array, memory-mapped read-only.

    Raises:
        CacheFullError: The disk has no room for the entry (checked before, and caught while, writing); no
            partial file is left.
    """
    folder.mkdir(parents=True, exist_ok=True)
    record, target = folder / f"{name}.json", folder / f"{name}.npy"
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    what = f"a {' x '.join(map(str, shape))} {dtype} cache entry"
    short = space_shortfall(folder, size + _SLACK)
    if short:
        raise CacheFullError(_full_message(what, short))
    record.unlink(missing_ok=True)  # the old record must not vouch for the new array while it is written
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".npy", dir=folder)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        with open(tmp, "rb+") as fh:
            reserve(fh.fileno(), os.path.getsize(tmp))  # pages a full disk cannot back would be a SIGBUS
        fill(out)
        out.flush()
        del out
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise CacheFullError(_full_message(what, space_shortfall(folder, size + _SLACK) or str(exc))) from None
        raise
    full = {**meta, "shape": list(shape), "dtype": dtype}
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(full, fh, sort_keys=True, default=str)
        os.replace(tmp, record)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        target.unlink(missing_ok=True)  # an array without its record is never read; do not leave it taking room
        if is_disk_full(exc):
            raise CacheFullError(_full_message("a cache record", str(exc))) from None
        raise
    return np.load(target, mmap_mode="r")


def _full_message(what: str, shortfall: str) -> str:
    return (
        f"no room on disk for {what}: {shortfall}; free some space, or put the cache on a larger disk "
        "(--cache-dir or $TRANSFERKIT_CACHE), or turn the cache off (--no-feature-cache, --no-decode-cache)"
    )
