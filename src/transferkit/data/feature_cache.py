"""Frozen-backbone features on disk: extracted once, reused by every run and strategy that needs them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transferkit._console import console
from transferkit.data._cache_store import cache_root, digest, load_entry, source_identity, write_entry
from transferkit.data.sources import ImageSource

CACHE_VERIFY = ("stat", "hash")
"""How cache entries are checked against their image files."""

__all__ = ["CACHE_VERIFY", "FeatureCache", "cache_root", "content_check"]

logger = logging.getLogger(__name__)

FORMAT = 1
"""Bumped when the stored layout or the meaning of a key field changes."""


class FeatureCache:
    """Pooled features of a frozen feature extractor for each image of a source, cached on disk.

    An entry is keyed by the extractor (backbone, a hash of its weights, the preprocessing: size, mean/std,
    interpolation, crop) and by the source (classes, labels, file paths). Its record also holds the source's
    fingerprint (file sizes and modification times, or the array contents), checked on every read: an entry
    whose files changed since it was written is rebuilt, never reused. Each lookup is logged as a hit, a miss
    or a rebuild, and recorded in `events`.

    Example:
        >>> import numpy as np
        >>> from transferkit.data import ImageSource
        >>> source = ImageSource(classes=["a", "b"], labels=np.array([0, 1]), arrays=np.zeros((2, 8, 8), np.uint8))
        >>> cache = FeatureCache("/tmp/transferkit-doctest-cache")
        >>> def extract(src, out):
        ...     out[:] = 1.0
        >>> cache.features(source, {"backbone": "demo", "dim": 4}, extract).shape
        (2, 4)
        >>> cache.features(source, {"backbone": "demo", "dim": 4}, extract).sum()  # the second call is a hit
        8.0
    """

    def __init__(self, root: str | Path | None = None, *, verbose: bool = True, verify: str = "stat") -> None:
        """Creates the cache.

        Args:
            root: Cache folder; default ``$TRANSFERKIT_CACHE`` or ``~/.cache/transferkit``. Features go under
                its ``features/`` sub-folder.
            verbose: Print each hit, miss and rebuild on the console (they are always logged).
            verify: How an entry is checked against its image files: ``stat`` (path, size and modification
                time) or ``hash`` (their contents: reads every file on each lookup).
        """
        self.folder = cache_root(root) / "features"
        self.verbose = verbose
        self.content = content_check(verify)
        self.events: list[tuple[str, str]] = []
        """(``hit`` | ``miss`` | ``rebuilt``, what) for each lookup, in order."""

    def features(
        self,
        source: ImageSource,
        extractor: dict,
        extract: Callable[[ImageSource, np.ndarray], None],
        what: str = "",
    ) -> np.ndarray:
        """The features of every image of `source`, shape (N, extractor["dim"]), float32, read-only.

        Args:
            source: The images; their order is the order of the rows.
            extractor: What computes the features, as JSON-serialisable values; must hold ``dim``. Any
                change of a value (weights hash, image size, ...) is another entry.
            extract: Called on a miss as ``extract(source, out)``; fills the (N, dim) float32 array `out`.
            what: A name for the log ("train", "val").
        """
        named = {"format": FORMAT, "extractor": extractor, "source": source_identity(source)}
        # Entries checked by content are kept apart: a stat-checked run would otherwise find them stale, and back.
        name = digest({**named, "verify": "hash"} if self.content else named)
        expect = {
            "format": FORMAT, "extractor": extractor, "fingerprint": source.fingerprint(self.content), "n": len(source)
        }  # fmt: skip
        status, array = load_entry(self.folder, name, expect)
        label = what or source.name or "images"
        if status == "hit":
            self._log("hit", label, f"feature cache hit: {label} ({len(source)} images) from {self.folder}")
            return array
        event = "rebuilt" if status == "stale" else "miss"
        why = "its images changed since they were cached; re-extracting" if status == "stale" else "extracting"
        self._log(event, label, f"feature cache {event}: {label} ({len(source)} images): {why}")
        shape = (len(source), int(extractor["dim"]))
        return write_entry(self.folder, name, expect, shape, "float32", lambda out: extract(source, out))

    def _log(self, event: str, label: str, message: str) -> None:
        self.events.append((event, label))
        logger.info(message)
        if self.verbose:
            console.print(message)


def content_check(verify: str) -> bool:
    """Whether `verify` (``stat`` or ``hash``) asks for the files' contents to be hashed."""
    if verify not in CACHE_VERIFY:
        raise ValueError(f"cache verify {verify!r}: choose one of {', '.join(CACHE_VERIFY)}")
    return verify == "hash"
