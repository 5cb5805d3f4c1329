"""Decode and resize each image once: a uint8 array on disk that every epoch reads instead of the files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from transferkit._console import console
from transferkit.data._cache_store import cache_root, digest, load_entry, source_identity, write_entry
from transferkit.data.errors import CacheFullError, DataError
from transferkit.data.feature_cache import content_check
from transferkit.data.preprocessing import Preprocessing
from transferkit.data.sources import ImageSource

__all__ = ["decoded_source"]

logger = logging.getLogger(__name__)

FORMAT = 1


def decoded_source(
    source: ImageSource, pre: Preprocessing, root: str | Path | None = None, *, verify: str = "stat"
) -> ImageSource:
    """`source` with every image decoded, resized and centre-cropped to a square once, for `pre`'s transforms.

    The square's side is the evaluation resize, ``image_size / crop_pct``.

    The pixels live in a uint8 memory-mapped array under ``<cache>/decoded/`` (``N x side x side x 3`` bytes),
    so memory stays bounded whatever the dataset size and the operating system keeps the hot part in its page
    cache. The evaluation transform of `pre` (resize to ``side``, centre-crop) gives the same
    pixels from this array as from the files; training crops are taken from the centred square. Entries are
    keyed and checked like the feature cache: files that changed since they were decoded are decoded again.

    Args:
        source: The images.
        pre: The model's preprocessing.
        root: Cache folder; default ``$TRANSFERKIT_CACHE`` or ``~/.cache/transferkit``.
        verify: ``stat`` (files checked by path, size and modification time) or ``hash`` (by content).

    Returns:
        An array-backed source with the same classes, labels and name; `source` itself when an image cannot
        be read (the files are then read every epoch, and the usual skipping applies).
    """
    side, interpolation = pre.eval_resize, pre.interpolation
    if source.arrays is not None and source.arrays.shape[1] == side and source.arrays.shape[2] == side:
        return source  # already square at this size: nothing to decode
    content = content_check(verify)
    folder = cache_root(root) / "decoded"
    named = {"format": FORMAT, "side": side, "interpolation": interpolation, "source": source_identity(source)}
    name = digest({**named, "verify": "hash"} if content else named)  # kept apart, as in the feature cache
    expect = {
        "format": FORMAT,
        "side": side,
        "interpolation": interpolation,
        "fingerprint": source.fingerprint(content),
    }
    status, array = load_entry(folder, name, expect)
    label = source.name or "images"
    if status == "hit":
        logger.info("decoded-image cache hit: %s", label)
    else:
        why = "files changed; decoding again" if status == "stale" else "decoding once"
        console.print(f"decoded-image cache {'rebuilt' if status == 'stale' else 'miss'}: {label} at {side} px: {why}")
        geometry = pre.geometry(crop=False)

        def fill(out: np.ndarray) -> None:
            for i in range(len(source)):
                out[i] = np.asarray(geometry(source.load(i)))

        try:
            array = write_entry(folder, name, expect, (len(source), side, side, 3), "uint8", fill)
        except CacheFullError:
            raise  # a full disk is the user's to fix; reading every file every epoch instead would hide it
        except DataError as exc:
            logger.warning("not caching decoded images of %s: %s", label, exc)
            return source
    return ImageSource(classes=list(source.classes), labels=source.labels, arrays=array, name=source.name)
