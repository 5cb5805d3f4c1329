"""Whole batches straight from a uint8 image array, augmented as tensors: no per-image decoding or PIL work."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from transferkit.data.preprocessing import Preprocessing
from transferkit.data.sources import ImageSource

__all__ = ["ArrayBatches"]


class ArrayBatches(Dataset):
    """Item ``[(index, seed), ...]`` (or ``[index, ...]``) is one normalised batch and its labels.

    Made for array-backed sources (in memory, IDX, or the decoded-image cache): a batch is one fancy index into the
    uint8 array, one conversion to float and one normalisation, instead of a PIL round trip per image. Evaluation
    centre-crops the preprocessing's `image_size` from the stored side; training takes a random `image_size` crop
    from the image padded by `padding` pixels of black on each side, flips half the images left-right and, with
    `erase` > 0, blanks a random rectangle (to the mean) in that fraction of them. The randomness of a batch comes
    from its first sample's seed, so a batch is the same whether or not a run was interrupted before it.

    Use it with ``DataLoader(batches, sampler=batch_sampler, batch_size=None)``.

    Example:
        >>> source = ImageSource(classes=["a", "b"], labels=np.array([0, 1]), arrays=np.zeros((2, 8, 8), np.uint8))
        >>> pre = Preprocessing(image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        >>> images, labels = ArrayBatches(source, pre)[[0, 1]]
        >>> tuple(images.shape), labels.tolist(), images.min().item()
        ((2, 3, 8, 8), [0, 1], -1.0)
    """

    def __init__(
        self,
        source: ImageSource,
        pre: Preprocessing,
        *,
        train: bool = False,
        padding: int = 0,
        flip: bool = True,
        erase: float = 0.0,
    ) -> None:
        """Creates the batches.

        Args:
            source: Array-backed images, (N, H, W) or (N, H, W, 3) uint8, at least ``pre.image_size`` on each side.
            pre: The model's preprocessing: the side of the square it sees and the normalisation.
            train: Augment (random crop from the padded image, flip, erasing); otherwise centre-crop only.
            padding: Training: black border added on each side before the random crop.
            flip: Training: flip half the images left-right.
            erase: Training: fraction of images with one random rectangle blanked.
        """
        if source.arrays is None:
            raise ValueError(f"{source.name or 'image source'}: ArrayBatches needs an array-backed source")
        height, width = source.arrays.shape[1:3]
        image_size = pre.image_size
        if min(height, width) < image_size:
            raise ValueError(f"images of {height}x{width} px are smaller than image_size {image_size}")
        self.source, self.pre, self.image_size, self.train = source, pre, image_size, train
        self.padding, self.flip, self.erase = int(padding), flip, float(erase)
        self.labels = torch.as_tensor(np.asarray(source.labels), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, batch: list) -> tuple[torch.Tensor, torch.Tensor]:
        seeded = bool(batch) and isinstance(batch[0], (tuple, list))
        index = np.array([item[0] for item in batch] if seeded else batch, dtype=np.int64)
        order = np.argsort(index)  # memory-mapped arrays read fastest in file order
        pixels = np.empty((len(index), *self.source.arrays.shape[1:]), np.uint8)
        pixels[order] = self.source.arrays[index[order]]
        images = torch.from_numpy(pixels)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        generator = torch.Generator().manual_seed(int(batch[0][1]) if seeded else int(index[0]))
        images = self._crop(images, generator)
        images = self.pre.normalize(images)  # grey (N, 1, H, W) broadcasts to 3 channels
        if self.train and self.erase > 0:
            self._erase(images, generator)
        return images.contiguous(memory_format=torch.channels_last), self.labels[torch.from_numpy(index)]

    def _crop(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = images.shape
        size = self.image_size
        if not self.train:
            top, left = (height - size) // 2, (width - size) // 2
            return images[:, :, top : top + size, left : left + size]
        pad = self.padding
        if pad:
            images = F.pad(images, (pad, pad, pad, pad))
        top = torch.randint(0, height + 2 * pad - size + 1, (n,), generator=generator).tolist()
        left = torch.randint(0, width + 2 * pad - size + 1, (n,), generator=generator).tolist()
        flips = (torch.rand(n, generator=generator) < 0.5).tolist() if self.flip else [False] * n
        crops = []
        for image, y, x, flip in zip(images, top, left, flips, strict=True):
            crop = image[:, y : y + size, x : x + size]
            crops.append(crop.flip(-1) if flip else crop)
        return torch.stack(crops)

    def _erase(self, images: torch.Tensor, generator: torch.Generator) -> None:
        n, _, height, width = images.shape
        chosen = (torch.rand(n, generator=generator) < self.erase).nonzero().flatten().tolist()
        for i in chosen:
            # 2-25% of the area, aspect ratio between 1:3 and 3:1 (the usual random-erasing ranges).
            area = height * width * (0.02 + 0.23 * torch.rand(1, generator=generator).item())
            ratio = float(np.exp(np.log(1 / 3) + np.log(9) * torch.rand(1, generator=generator).item()))
            h = min(height, max(1, int(round((area * ratio) ** 0.5))))
            w = min(width, max(1, int(round((area / ratio) ** 0.5))))
            y = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            x = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            images[i, :, y : y + h, x : x + w] = 0.0  # the normalised mean
