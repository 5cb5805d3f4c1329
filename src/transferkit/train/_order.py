"""Sample order and augmentation randomness that depend only on (seed, epoch), so a run can resume mid-epoch.

A plain shuffled DataLoader draws its permutation from a generator whose state depends on everything drawn
before, and augmentations draw from the process-wide RNG (or from worker RNGs that restart with every
epoch). Neither can be fast-forwarded to "step k of epoch e" without replaying the whole run. Here the
permutation of epoch e comes from a generator seeded with (seed, e), and every sample carries its own
augmentation seed, so the batches from step k on are the same whether or not the run was interrupted,
with any number of loader workers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from transferkit.train.imbalance import balanced_order

__all__ = ["EpochBatchSampler", "SeededSamples"]

# Large odd multiplier so that (seed, epoch) pairs map to distinct generator seeds.
_EPOCH_STRIDE = 1_000_003


class EpochBatchSampler(Sampler[list]):
    """Batches of epoch `e` from a permutation seeded by `(seed, e)`; can start at any step.

    With `sample_seeds`, each index is yielded as `(index, seed)` for `SeededSamples`. With `labels` (and
    `shuffle`), each epoch is a class-balanced draw with replacement (`imbalance.balanced_order`) from the same
    seeded generator, so it too can start at any step.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        sample_seeds: bool = False,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.sample_seeds = n, batch_size, shuffle, seed, sample_seeds
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.int64)
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"{len(self.labels)} labels for {n} samples")
        self.epoch, self.start_step = 1, 0

    def set_position(self, epoch: int, step: int = 0) -> None:
        """The next iteration yields epoch `epoch`'s batches from batch `step` on (step is 0-based)."""
        self.epoch, self.start_step = epoch, step

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list]:
        generator = torch.Generator().manual_seed(self.seed * _EPOCH_STRIDE + self.epoch)
        if self.shuffle and self.labels is not None:
            order = balanced_order(self.labels, generator)
        else:
            order = torch.randperm(self.n, generator=generator) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2**62, (self.n,), generator=generator)
        start, self.start_step = self.start_step, 0
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            if self.sample_seeds:
                yield list(zip(idx, seeds[b * self.batch_size : (b + 1) * self.batch_size].tolist(), strict=True))
            else:
                yield idx


class SeededSamples(Dataset):
    """Wraps a dataset so that item `(i, seed)` is `dataset[i]` computed under RNGs seeded with `seed`.

    The process-wide torch and Python RNGs are restored afterwards, so loading data never changes the
    random numbers the model (dropout, drop-path) sees.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        torch_state, py_state = torch.get_rng_state(), random.getstate()
        # default_generator only: torch.manual_seed would also reseed (and disturb) CUDA generators.
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
