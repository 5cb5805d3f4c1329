"""BatchNorm over the global batch of a data-parallel job on CPUs.

`torch.nn.SyncBatchNorm` refuses CPU tensors (its kernels are CUDA-only), so without this every process
of a gloo job would normalise with the statistics of its own slice of the batch, and a run on N
processes would train a different model from one process with the same global batch. The maths is
BatchNorm's: the per-channel sums that make the mean and variance (forward) and the two sums of the
input gradient (backward) are all-reduced. Weight and bias gradients stay local; DistributedDataParallel
averages them like any other gradient.

timm's `BatchNormAct2d` (BatchNorm, then dropout and the activation, in one module: EfficientNet's layers) becomes
a `CpuSyncBatchNormAct` that keeps its dropout and activation; a plain synchronised BatchNorm in its place would
silently take every activation out of the network.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["CpuSyncBatchNorm", "CpuSyncBatchNormAct", "convert_cpu_sync_batchnorm"]


class CpuSyncBatchNorm(_BatchNorm):
    """A BatchNorm layer of any dimensionality whose training statistics span every process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        synced = self.training and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as in _BatchNorm
                factor = 1.0 / float(self.num_batches_tracked)
        running = self.track_running_stats
        return _SyncBatchNorm.apply(
            input,
            self.weight,
            self.bias,
            self.running_mean if running else None,
            self.running_var if running else None,
            self.eps,
            factor,
        )


class CpuSyncBatchNormAct(CpuSyncBatchNorm):
    """`CpuSyncBatchNorm`, then the dropout and activation of the timm `BatchNormAct2d` it replaces.

    `drop` and `act` are the replaced layer's own modules (set by `convert_cpu_sync_batchnorm`), so the state-dict
    keys stay those of the original.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(input)))


def convert_cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer in `module` with a `CpuSyncBatchNorm` sharing its parameters and buffers.

    A timm `BatchNormAct2d` becomes a `CpuSyncBatchNormAct` with the same dropout and activation.
    """
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        kind = CpuSyncBatchNormAct if isinstance(module, BatchNormAct2d) else CpuSyncBatchNorm
        out = kind(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, convert_cpu_sync_batchnorm(child))
    return out


class _SyncBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum):  # noqa: D102
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        sums = torch.cat(
            [x.sum(dims, dtype=torch.float32), x.new_tensor([x.numel() // x.shape[1]], dtype=torch.float32)]
        )
        dist.all_reduce(sums)
        count = sums[-1]
        mean = sums[:-1] / count
        xmu = x - mean.view(shape).to(x.dtype)
        # Two passes (mean, then squared deviations) rather than E[x^2] - E[x]^2, which cancels badly.
        var = (xmu * xmu).sum(dims, dtype=torch.float32)
        dist.all_reduce(var)
        var = var / count
        invstd = torch.rsqrt(var + eps)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
                unbiased = var * count / torch.clamp(count - 1, min=1)
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        xhat = xmu * invstd.view(shape).to(x.dtype)
        ctx.save_for_backward(xhat, invstd, weight, count)
        ctx.dims, ctx.shape = dims, shape
        if weight is None:
            return xhat
        return xhat * weight.view(shape) + bias.view(shape)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        xhat, invstd, weight, count = ctx.saved_tensors
        dims, shape = ctx.dims, ctx.shape
        grad_bias = grad.sum(dims)
        grad_weight = (grad * xhat).sum(dims)
        # The input gradient depends on the whole batch's sums; the parameter gradients stay local.
        sums = torch.cat([grad_bias, grad_weight]).float()
        dist.all_reduce(sums)
        channels = grad_bias.numel()
        mean_dy, mean_dy_xhat = sums[:channels] / count, sums[channels:] / count
        scale = invstd if weight is None else invstd * weight.float()
        grad_input = (grad - mean_dy.view(shape) - xhat * mean_dy_xhat.view(shape)) * scale.view(shape)
        if weight is None:
            return grad_input.to(grad.dtype), None, None, None, None, None, None
        return grad_input.to(grad.dtype), grad_weight, grad_bias, None, None, None, None
