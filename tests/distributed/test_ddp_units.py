"""Pieces of data-parallel training that need no second process: sharding, no-op context, precision, config."""

import pytest
import torch
from torch import nn

from transferkit import TrainConfig
from transferkit.config import ConfigError
from transferkit.train._order import EpochBatchSampler
from transferkit.train.distributed import DistContext, unwrap
from transferkit.train.precision import MixedPrecision


@pytest.mark.parametrize(("n", "batch", "world"), [(37, 8, 2), (36, 8, 3), (29, 7, 4), (10, 10, 3)])
def test_rank_slices_of_each_batch_make_up_the_single_process_batch(n, batch, world):
    """Concatenated in rank order, the slices are the one-process batch; a last batch smaller than the world drops."""
    single = EpochBatchSampler(n, batch, shuffle=True, seed=3)
    single.set_position(2)
    expected = [b for b in single if len(b) >= world]
    shards = []
    for rank in range(world):
        sampler = DistContext(world, rank).shard_batches(EpochBatchSampler(n, batch, shuffle=True, seed=3))
        sampler.set_position(2)
        shards.append(list(sampler))
        assert len(sampler) == len(expected)
    for step, batch_indices in enumerate(expected):
        slices = [shards[rank][step] for rank in range(world)]
        assert all(slices), "every rank gets at least one sample per step"
        assert max(map(len, slices)) - min(map(len, slices)) <= 1
        assert sum(slices, []) == batch_indices


def test_mid_epoch_position_passes_through_to_the_global_order():
    base = EpochBatchSampler(40, 8, shuffle=True, seed=0)
    base.set_position(3, 2)
    rest = list(base)
    sharded = DistContext(2, 1).shard_batches(EpochBatchSampler(40, 8, shuffle=True, seed=0))
    sharded.set_position(3, 2)
    assert list(sharded) == [b[4:] for b in rest]


def test_dataset_shards_are_contiguous_and_cover_everything():
    data = list(range(11))
    parts = [list(DistContext(3, r).shard_dataset(data)) for r in range(3)]
    assert sum(parts, []) == data
    assert [len(p) for p in parts] == [4, 4, 3]
    with pytest.raises(ValueError, match="each needs at least one"):
        DistContext(4, 0).shard_dataset([1, 2])


def test_a_single_process_context_changes_nothing():
    ctx = DistContext()
    sampler = EpochBatchSampler(10, 4, shuffle=False, seed=0)
    model = nn.Linear(2, 2)
    assert ctx.shard_batches(sampler) is sampler
    assert ctx.wrap(model, torch.device("cpu")) is model
    assert ctx.sync_batchnorm(model, torch.device("cpu")) is model
    assert ctx.sum([1.5, 2]).tolist() == [1.5, 2.0]
    assert ctx.broadcast("x") == "x"


def test_the_global_batch_must_cover_every_process():
    DistContext(4, 0).check_batch_size(4)
    with pytest.raises(ValueError, match="at least 4"):
        DistContext(4, 0).check_batch_size(3)


def test_unwrap_reaches_the_model_inside_wrappers():
    model = nn.Linear(2, 2)

    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert unwrap(Wrapper(Wrapper(model))) is model
    assert unwrap(model) is model


def test_mixed_precision_is_cuda_only():
    for precision in ("fp32", "bf16", "fp16"):
        amp = MixedPrecision(precision, torch.device("cpu"), channels_last=False)
        assert not amp.enabled and amp.scaler is None and not amp.channels_last
        x = torch.randn(2, 3, 4, 4)
        assert amp.inputs(x) is x
        # Channels-last is a memory format, not a precision: it applies on the CPU too.
        cl = MixedPrecision(precision, torch.device("cpu"), channels_last=True)
        assert cl.inputs(x).is_contiguous(memory_format=torch.channels_last) and torch.equal(cl.inputs(x), x)
        with amp.autocast():
            assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    # A step without a scaler is a plain optimiser step, and a skipped one is never an "fp16 overflow".
    layer = nn.Linear(2, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    amp = MixedPrecision("fp16", torch.device("cpu"))
    before = layer.weight.detach().clone()
    amp.backward(layer(torch.ones(1, 2)).sum(), opt)
    amp.step(opt)
    assert not torch.equal(before, layer.weight)
    assert amp.skip() is False


def test_precision_is_validated():
    assert TrainConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        TrainConfig(precision="fp8")
