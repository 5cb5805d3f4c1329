"""A torch Dataset over an ImageSource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from transferkit.data.sources import ImageSource

__all__ = ["ImageDataset"]


class ImageDataset(Dataset):
    """Serves ``(transform(image), label)`` pairs from an ``ImageSource``.

    Images are read when requested, as 8-bit RGB PIL images. An unreadable image raises
    ``DataError`` naming the file; this class does not skip it.

    Example:
        >>> import numpy as np
        >>> source = ImageSource(classes=["a", "b"], labels=np.array([0, 1]), arrays=np.zeros((2, 8, 8), np.uint8))
        >>> image, label = ImageDataset(source, transform=lambda img: img.size)[1]
        >>> image, label
        ((8, 8), 1)
    """

    def __init__(self, source: ImageSource, transform: Callable[[Any], Any] | None = None) -> None:
        """Creates the dataset.

        Args:
            source: The images and labels.
            transform: Applied to each RGB PIL image; ``None`` returns the image itself.
        """
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image = self.source.load(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.source.labels[i])
