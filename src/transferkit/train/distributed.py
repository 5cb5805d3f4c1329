"""Data-parallel training over several processes, as launched by ``torchrun``: one process per device.

Every process runs the same run with the same seed. Each global batch (from the run's deterministic
sample order, `EpochBatchSampler`) is cut into one contiguous slice per process, and each process's
loss is weighted by its share of the global batch, so the averaged gradient equals the gradient of a
single process that sees the whole batch. Step and epoch figures are summed across processes; only
rank 0 writes the run directory and prints.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) every helper here is a no-op, so
the single-process path is exactly what it was.

Example:
    >>> ctx = DistContext()               # a single process
    >>> ctx.is_main, ctx.sum([2.0, 3]).tolist()
    (True, [2.0, 3.0])
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Sampler, Subset

__all__ = ["DistContext", "init_distributed", "unwrap"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel job; `world_size` 1 means a plain single process."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """`device` with CUDA pinned to this process's GPU (``LOCAL_RANK``) when several processes share a node."""
        if not self.enabled or device.type != "cuda":
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size < self.world_size:
            raise ValueError(
                f"batch_size {batch_size} is the global batch, shared by {self.world_size} processes: "
                f"it must be at least {self.world_size}"
            )

    def shard_batches(self, sampler: Sampler[list]) -> Sampler[list]:
        """This process's slice of every batch `sampler` yields (the same global batches as one process)."""
        return _ShardedBatches(sampler, self.rank, self.world_size) if self.enabled else sampler

    def shard_dataset(self, dataset: Dataset) -> Dataset:
        """A contiguous 1/world_size of `dataset` (evaluation and feature extraction; no padding, so sums are exact)."""
        if not self.enabled:
            return dataset
        n = len(dataset)  # type: ignore[arg-type]
        if n < self.world_size:
            raise ValueError(f"{n} images cannot be shared by {self.world_size} processes: each needs at least one")
        start, stop = _bounds(n, self.rank, self.world_size)
        return Subset(dataset, range(start, stop))

    def sum(self, values: list[float]) -> torch.Tensor:
        """Element-wise sum of `values` over all processes (float64, on the CPU)."""
        total = torch.tensor(values, dtype=torch.float64)
        if self.enabled:
            dist.all_reduce(total)
        return total

    def broadcast(self, obj: object) -> object:
        """Rank 0's `obj`, on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it may repair files); the others run it once it is done."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def sync_batchnorm(self, model: nn.Module, device: torch.device) -> nn.Module:
        """BatchNorm layers that compute their statistics over the global batch rather than this process's slice.

        CUDA uses PyTorch's SyncBatchNorm (timm's conversion, which keeps the activation of its norm + activation
        layers); PyTorch has none for CPU tensors, so CPU runs use an equivalent built on all_reduce. State-dict keys
        stay the same, so checkpoints load into a plain model.
        """
        if not self.enabled:
            return model
        if device.type == "cuda":
            from timm.layers import convert_sync_batchnorm

            return convert_sync_batchnorm(model)
        from transferkit.train._sync_bn import convert_cpu_sync_batchnorm

        return convert_cpu_sync_batchnorm(model)

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` in DistributedDataParallel when it has anything to train across processes.

        A module without trainable parameters needs no wrapper (every process computes the same thing).
        Buffers are not re-broadcast every step: with synchronised BatchNorm they stay equal on every
        process, and frozen BatchNorm never changes them. Every trainable parameter takes part in the
        forward pass of the models here, so unused-parameter detection (an extra graph walk) stays off.
        """
        if not self.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False, find_unused_parameters=False)


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel and/or torch.compile wrapper."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


_CONTEXT: DistContext | None = None


def init_distributed(device: str = "auto") -> DistContext:
    """This process's context; joins the process group on first use when launched by ``torchrun``.

    The backend is NCCL for CUDA tensors (gloo for the small CPU tensors of metrics) when the run uses a
    GPU, and gloo otherwise. Calling it again returns the same context.

    Args:
        device: The run's device setting (``auto``, ``cpu``, ``cuda``...), which decides the backend.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="cuda:nccl,cpu:gloo" if cuda else "gloo")
        atexit.register(_shutdown)
    _CONTEXT = DistContext(dist.get_world_size(), dist.get_rank(), local)
    if rank != 0:
        from transferkit._console import console

        console.quiet = True  # one voice: rank 0 prints for every process
    return _CONTEXT


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of `rank`'s contiguous share of `n` items; shares differ by at most one."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class _ShardedBatches(Sampler[list]):
    """Rank `rank`'s contiguous slice of each batch of `base`; a batch smaller than the world is dropped.

    `set_position` passes through, so mid-epoch resume works as for one process.
    """

    def __init__(self, base: Sampler[list], rank: int, world: int) -> None:
        self.base, self.rank, self.world = base, rank, world

    def set_position(self, epoch: int, step: int = 0) -> None:
        self.base.set_position(epoch, step)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        n, size = self.base.n, self.base.batch_size  # type: ignore[attr-defined]
        tail = n % size
        # Every process needs at least one sample per step: a last batch smaller than the world is skipped.
        return n // size + (tail >= self.world)

    def __iter__(self) -> Iterator[list]:
        for batch in self.base:
            if len(batch) < self.world:
                continue
            start, stop = _bounds(len(batch), self.rank, self.world)
            yield batch[start:stop]
