"""CPU SyncBatchNorm on two gloo processes equals one BatchNorm over the whole batch."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from timm.layers import BatchNormAct2d
from torch import nn

from transferkit.train._sync_bn import CpuSyncBatchNorm, CpuSyncBatchNormAct, convert_cpu_sync_batchnorm


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 1),
        BatchNormAct2d(4, act_layer=nn.SiLU),  # timm's BatchNorm + activation, as in EfficientNet
        nn.Conv2d(4, 2, 1),
    )


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(10, 3, 8, 8, generator=generator) * 3 + 1
        weights = torch.randn(10, 2, 6, 6, generator=generator)
        model = convert_cpu_sync_batchnorm(_net())
        lo, hi = (0, 6) if rank == 0 else (6, 10)  # unequal slices, as the last batch of an epoch may be
        part = x[lo:hi].clone().requires_grad_()
        out = model(part)
        (out * weights[lo:hi]).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        for g in grads:
            dist.all_reduce(g)  # what DistributedDataParallel does (it then divides by the world size)
        result = {
            "out": out.detach(),
            "input_grad": part.grad,
            "param_grads": grads,
            "running": (model[1].running_mean.clone(), model[1].running_var.clone()),
        }
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_normalise_with_the_global_batch_statistics(tmp_path):
    reference = _net()
    generator = torch.Generator().manual_seed(1)
    x = (torch.randn(10, 3, 8, 8, generator=generator) * 3 + 1).requires_grad_()
    weights = torch.randn(10, 2, 6, 6, generator=generator)
    out = reference(x)
    (out * weights).sum().backward()

    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))

    torch.testing.assert_close(torch.cat([r0["out"], r1["out"]]), out.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r0["input_grad"], r1["input_grad"]]), x.grad, atol=1e-5, rtol=1e-4)
    for got, param in zip(r0["param_grads"], reference.parameters(), strict=True):
        torch.testing.assert_close(got, param.grad, atol=1e-4, rtol=1e-4)
    bn = reference[1]
    torch.testing.assert_close(r0["running"][0], bn.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(r0["running"][1], bn.running_var, atol=1e-6, rtol=1e-5)
    # Plain per-process BatchNorm would not match: the slices' statistics differ from the batch's.
    plain = nn.BatchNorm2d(3)(x.detach()[:6])
    assert not torch.allclose(plain, nn.BatchNorm2d(3)(x.detach())[:6], atol=1e-3)


def test_conversion_keeps_parameters_buffers_and_state_dict_keys():
    net = _net()
    net[1].eval()
    keys = list(net.state_dict())
    weight = net[1].weight
    converted = convert_cpu_sync_batchnorm(net)
    assert isinstance(converted[1], CpuSyncBatchNorm)
    assert isinstance(converted[4], CpuSyncBatchNormAct) and converted[4].act is net[4].act
    assert converted[1].weight is weight and not converted[1].training
    assert list(converted.state_dict()) == keys
    # Outside a process group it is ordinary BatchNorm.
    converted.train()
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(converted(x), _net().train()(x))


@pytest.mark.parametrize("training", [False, True])
def test_a_timm_norm_act_layer_keeps_its_activation(training):
    layer = BatchNormAct2d(3, act_layer=nn.SiLU)
    layer.running_mean.uniform_(-1, 1)
    layer.train(training)
    x = torch.randn(4, 3, 5, 5)
    want = layer(x)
    assert (want < 0).any() and want.min() > -0.3  # SiLU's floor: the activation ran
    torch.testing.assert_close(convert_cpu_sync_batchnorm(layer)(x), want)
