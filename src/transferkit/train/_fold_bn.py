"""BatchNorm folded into the convolution before it, while the BatchNorm normalises with its running statistics.

A BatchNorm in eval mode is a per-channel affine map, ``y = x * scale + shift`` with ``scale = weight / sqrt(var +
eps)`` and ``shift = bias - mean * scale``. After a convolution that map can be moved into the convolution itself:
``conv(x, W * scale) + shift``. Pretrained runs keep their BatchNorm statistics (``bn_stats: frozen``), so during
the whole of training every BatchNorm is such a map, and a training step does one pass less over every activation
in the forward and one less in the backward (the normalisation and its gradient), for a few multiplications on the
weights. Gradients still reach the convolution's weights and the BatchNorm's weight and bias (through `scale` and
`shift`), so the same parameters train; only float rounding differs from the unfolded model.

Which BatchNorm follows which convolution is read from the model's first forward in the block: a BatchNorm whose
input is the output of a convolution is folded into it. Before any folding is used, the folded model's output is
compared with the unfolded one on that first input (eval mode, no gradients); if they disagree, nothing is folded.
The state dict, the checkpoints and the exported model are untouched: only the forward changes, and only within
the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferkit.train import _depthwise
from transferkit.train._kernel_choices import KernelChoices

__all__ = ["FOLD_TOLERANCE", "folded_batchnorm"]

FOLD_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
"""Folded and unfolded outputs must agree this closely on the first batch (relative to the output's scale)."""

# BatchNormAct2d: timm's BatchNorm, then dropout and activation; CpuSync*: the same under torchrun (_sync_bn.py).
_FOLDABLE_NORMS = ("BatchNorm2d", "BatchNormAct2d", "CpuSyncBatchNorm", "CpuSyncBatchNormAct")


def _foldable_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _foldable_norm(module: nn.Module) -> bool:
    return (
        type(module).__name__ in _FOLDABLE_NORMS
        and isinstance(module, _BatchNorm)
        and module.running_mean is not None
        and module.running_var is not None
    )


def _scale_shift(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = bn.bias + shift
    return scale, shift


def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, choices) -> torch.Tensor:
    padding = tuple(conv.padding)
    if _depthwise._same_padding(conv):
        from timm.layers import pad_same

        x, padding = pad_same(x, conv.kernel_size, conv.stride, conv.dilation), (0, 0)
    if (
        choices is not None
        and _depthwise._qualifies(conv)
        and torch.is_grad_enabled()
        and weight.requires_grad
        and x.device.type == "cpu"
    ):
        return _depthwise._DepthwiseConv.apply(x, weight, bias, tuple(conv.stride), padding, choices)
    return F.conv2d(x, weight, bias, conv.stride, padding, conv.dilation, conv.groups)


def _folded_conv_forward(conv: nn.Conv2d, bn: _BatchNorm, choices, unfolded, x: torch.Tensor) -> torch.Tensor:
    if bn.training:  # batch statistics: nothing to fold
        return unfolded(x)
    scale, shift = _scale_shift(bn)
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return _conv(conv, x, conv.weight * scale.view(-1, 1, 1, 1), shift, choices)


def _folded_norm_forward(bn: _BatchNorm, unfolded, x: torch.Tensor) -> torch.Tensor:
    if bn.training:
        return unfolded(x)
    # The convolution before has normalised already; what is left of timm's BatchNormAct2d is dropout + activation.
    if hasattr(bn, "act"):
        x = bn.act(bn.drop(x))
    return x


def _pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Conv2d, _BatchNorm]]:
    """(convolution, BatchNorm) pairs where the BatchNorm's input is the convolution's output, in one forward."""
    outputs: dict[int, tuple[torch.Tensor, nn.Conv2d]] = {}
    pairs: list[tuple[nn.Conv2d, _BatchNorm]] = []

    def after_conv(module, inputs, output) -> None:
        outputs[id(output)] = (output, module)  # the tensor is kept so that its id is not reused

    def before_norm(module, inputs) -> None:
        found = outputs.get(id(inputs[0]))
        if found is not None and found[0] is inputs[0] and all(found[1] is not c for c, _ in pairs):
            pairs.append((found[1], module))

    hooks = [m.register_forward_hook(after_conv) for m in model.modules() if _foldable_conv(m)]
    hooks += [m.register_forward_pre_hook(before_norm) for m in model.modules() if _foldable_norm(m)]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return pairs


class _Folding:
    """Finds the pairs on the model's first call, checks the folded output, and patches the forwards."""

    def __init__(self, model: nn.Module, choices: KernelChoices | None) -> None:
        self.model, self.choices = model, choices
        self.patched: list[nn.Module] = []
        self.saved: dict[int, object] = {}
        self.decided = False

    def before_first_call(self, module: nn.Module, args: tuple) -> None:
        if self.decided or not args or not isinstance(args[0], torch.Tensor):
            return
        self.decided = True
        modes = {m: m.training for m in self.model.modules()}
        try:
            self.model.eval()
            with torch.no_grad():
                probe = args[0][:2]
                pairs = _pairs(self.model, probe)
                want = self.model(probe)
                self._patch(pairs)
                got = self.model(probe)
            if not _close(got, want):
                self.restore()
        finally:
            for m, training in modes.items():
                m.training = training

    def _patch(self, pairs: list[tuple[nn.Conv2d, _BatchNorm]]) -> None:
        for conv, bn in pairs:
            for module in (conv, bn):
                self.saved[id(module)] = module.__dict__.get("forward")
            conv_unfolded, bn_unfolded = conv.forward, bn.forward  # whatever forward they had (fast_depthwise's too)
            conv.forward = partial(_folded_conv_forward, conv, bn, self.choices, conv_unfolded)
            bn.forward = partial(_folded_norm_forward, bn, bn_unfolded)
            self.patched += [conv, bn]

    def restore(self) -> None:
        for module in self.patched:
            previous = self.saved.pop(id(module), None)
            module.__dict__.pop("forward", None)
            if previous is not None:
                module.forward = previous
        self.patched = []


def _close(got, want) -> bool:
    if not (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)) or got.shape != want.shape:
        return False
    scale = want.abs().max().clamp_min(1.0)
    return torch.allclose(got / scale, want / scale, **FOLD_TOLERANCE)


@contextmanager
def folded_batchnorm(
    model: nn.Module, enabled: bool = True, choices: KernelChoices | None = None
) -> Iterator[_Folding | None]:
    """Within the block, every BatchNorm in eval mode after a convolution is computed inside that convolution.

    Enter it inside `fast_depthwise` (same `choices`) to keep the depthwise weight gradients' kernels.

    Args:
        model: Any model; pairs are found on its first call in the block.
        enabled: False leaves the model as it is.
        choices: The depthwise kernel choices of `fast_depthwise`, or None when that is off.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> x = torch.randn(2, 3, 8, 8)
        >>> with folded_batchnorm(net) as folding:
        ...     out = net(x)
        ...     folded = len(folding.patched) // 2
        >>> folded, torch.allclose(out, net(x), atol=1e-5)
        (1, True)
    """
    if not enabled:
        yield None
        return
    folding = _Folding(model, choices)
    hook = model.register_forward_pre_hook(folding.before_first_call)
    try:
        yield folding
    finally:
        hook.remove()
        folding.restore()
