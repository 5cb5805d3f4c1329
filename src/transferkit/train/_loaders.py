"""The data loaders of a run: whole batches from decoded arrays where possible, per-image transforms otherwise."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from transferkit.config import TrainConfig
from transferkit.data import ImageDataset, ImageSource, Preprocessing
from transferkit.data.batches import ArrayBatches
from transferkit.data.decoded import decoded_source
from transferkit.data.transforms import build_transforms, pad_crop_padding
from transferkit.train._order import EpochBatchSampler, SeededSamples
from transferkit.train.distributed import DistContext

__all__ = ["LoaderFactory"]


class LoaderFactory:
    """Makes a run's loaders, each with its own seeded generator (none may draw from the global RNG the model uses).

    The per-image datasets it made are kept, so that the run can count the images they had to skip.
    """

    def __init__(self, config: TrainConfig, pre: Preprocessing, dist: DistContext, device: torch.device) -> None:
        self.config, self.pre, self.dist, self.device = config, pre, dist, device
        self.datasets: list[ImageDataset] = []

    def images(self, source: ImageSource, train: bool) -> tuple[DataLoader, torch.Generator]:
        """Batches of preprocessed images: shuffled and augmented when `train`, sharded over processes."""
        config, dist = self.config, self.dist
        if config.decode_cache:
            source = decoded_source(
                source, self.pre, config.cache_dir, verify=config.cache_verify
            )  # decode and resize once, not every epoch
        generator = torch.Generator().manual_seed(config.seed)
        common = {"num_workers": config.workers, "generator": generator, "pin_memory": self.device.type == "cuda"}
        batches = self._array_batches(source, train)
        if batches is not None:  # whole batches from the uint8 array, augmented as tensors
            if not train:
                mine = list(dist.shard_dataset(range(len(source))))  # type: ignore[arg-type]
                chunks = [mine[i : i + config.batch_size] for i in range(0, len(mine), config.batch_size)]
                return DataLoader(batches, sampler=chunks, batch_size=None, **common), generator
            order = self._train_order(len(source), source.labels, sample_seeds=True)
            return DataLoader(batches, sampler=dist.shard_batches(order), batch_size=None, **common), generator
        transform = build_transforms(self.pre, train=train, augment=config.augment, **config.augment_options())
        dataset = ImageDataset(source, transform, skip_unreadable=True)
        self.datasets.append(dataset)
        if not train:
            return DataLoader(dist.shard_dataset(dataset), batch_size=config.batch_size, **common), generator
        sampler = self._train_order(len(source), source.labels, sample_seeds=True)
        return DataLoader(SeededSamples(dataset), batch_sampler=dist.shard_batches(sampler), **common), generator

    def tensors(
        self, train: tuple[torch.Tensor, ...], val: tuple[torch.Tensor, ...], *, shard: bool, val_batch: int
    ) -> tuple[DataLoader, DataLoader, torch.Generator]:
        """Loaders over precomputed inputs (cached features or prefix activations) and their labels."""
        generator = torch.Generator().manual_seed(self.config.seed)
        order = self._train_order(len(train[-1]), train[-1])
        sampler = self.dist.shard_batches(order) if shard else order
        train_loader = DataLoader(TensorDataset(*train), batch_sampler=sampler, generator=generator)
        val_loader = DataLoader(TensorDataset(*val), batch_size=val_batch, generator=torch.Generator())
        return train_loader, val_loader, generator

    def _train_order(self, n: int, labels, *, sample_seeds: bool = False) -> EpochBatchSampler:
        """The training batches' order: a seeded shuffle, or a class-balanced draw (`TrainConfig.sampler`)."""
        config = self.config
        balanced = torch.as_tensor(labels, dtype=torch.int64) if config.sampler == "balanced" else None
        return EpochBatchSampler(
            n, config.batch_size, shuffle=True, seed=config.seed, sample_seeds=sample_seeds, labels=balanced
        )

    @property
    def unreadable(self) -> set[str]:
        return {p for dataset in self.datasets for p in dataset.unreadable}

    def _array_batches(self, source: ImageSource, train: bool) -> ArrayBatches | None:
        """Batches straight from the uint8 array when the source has one at the right size and the augmentation is
        tensor-level (pad-crop without a policy, or none); None means the per-image PIL path."""
        pre, config = self.pre, self.config
        size, side = pre.image_size, pre.eval_resize
        if source.arrays is None or source.arrays.shape[1] != side or source.arrays.shape[2] != side:
            return None
        augment = train and config.augment
        if augment and (config.augmentation != "pad-crop" or config.augment_policy != "none"):
            return None
        return ArrayBatches(
            source,
            pre,
            train=augment,
            padding=pad_crop_padding(size),
            flip=config.flip,
            erase=config.random_erase,
        )
