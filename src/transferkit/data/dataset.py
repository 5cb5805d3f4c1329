"""A torch Dataset over an ImageSource."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from transferkit.data.errors import DataError
from transferkit.data.sources import ImageSource

__all__ = ["ImageDataset"]

logger = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Serves ``(transform(image), label)`` pairs from an ``ImageSource``.

    Images are read when requested, as 8-bit RGB PIL images. By default an unreadable image raises
    ``DataError`` naming the file. With ``skip_unreadable=True`` (training) it is logged, recorded in
    ``unreadable`` and replaced by the next readable image, so an image that breaks after the
    pre-flight check (a file changed or removed mid-run) never stops an epoch.

    Example:
        >>> import numpy as np
        >>> source = ImageSource(classes=["a", "b"], labels=np.array([0, 1]), arrays=np.zeros((2, 8, 8), np.uint8))
        >>> image, label = ImageDataset(source, transform=lambda img: img.size)[1]
        >>> image, label
        ((8, 8), 1)
    """

    def __init__(
        self, source: ImageSource, transform: Callable[[Any], Any] | None = None, *, skip_unreadable: bool = False
    ) -> None:
        """Creates the dataset.

        Args:
            source: The images and labels.
            transform: Applied to each RGB PIL image; ``None`` returns the image itself.
            skip_unreadable: Replace an unreadable image by the next readable one instead of raising.
        """
        self.source = source
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.unreadable: dict[str, str] = {}
        """Path (or index) -> reason, for each image skipped in this process."""

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if not self.skip_unreadable:
            return self._item(i)
        for j in (k % len(self) for k in range(i, i + len(self))):
            try:
                return self._item(j)
            except DataError as exc:
                where = str(self.source.paths[j]) if self.source.paths is not None else f"#{j}"
                if where not in self.unreadable:
                    logger.warning("skipping unreadable image %s", exc)
                self.unreadable[where] = str(exc)
        raise DataError(f"{self.source.name or 'image source'}: no image can be read")

    def _item(self, i: int) -> tuple[Any, int]:
        image = self.source.load(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.source.labels[i])
