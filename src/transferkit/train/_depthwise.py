"""Faster weight gradients for depthwise convolutions on the CPU.

PyTorch's CPU kernel for the weight gradient of a depthwise convolution is very slow on small feature maps with
many channels. Profiling EfficientNet-Lite0 training at 48 px (batch 128, 2 cores), the 5x5 depthwise layers of
the last stages (2x2 and 3x3 maps, 480 to 1,152 channels) took 1.5 s of a 2.4 s profile of three steps. The same
gradient is a sum, for each kernel tap, of the products of a shifted input window and the output gradient; on those
shapes that sum is 5 to 25 times faster, on large maps it is slower. So each shape is timed both ways (like
cuDNN's benchmark mode) and the faster one is kept. Both give the same values only to float rounding, so the
choice is made once per machine and recorded in the run (`_kernel_choices`): the same seed gives the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.train._kernel_choices import TAPS, KernelChoices, shape_key, time_once

__all__ = ["KernelChoices", "fast_depthwise"]


def _native_weight_grad(x, weight, grad_out, stride, padding) -> torch.Tensor:
    mask = (False, True, False)
    groups = weight.shape[0]
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, stride, padding, (1, 1), False, (0, 0), groups, mask
    )[1]


def _tap_weight_grad(x, weight, grad_out, stride, padding) -> torch.Tensor:
    (ph, pw), (sh, sw) = padding, stride
    padded = F.pad(x, (pw, pw, ph, ph))
    _, channels, height, width = grad_out.shape
    kh, kw = weight.shape[-2:]
    grad = x.new_empty(channels, kh, kw)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i : i + sh * (height - 1) + 1 : sh, j : j + sw * (width - 1) + 1 : sw]
            grad[:, i, j] = (window * grad_out).sum((0, 2, 3))
    return grad.unsqueeze(1)


def _weight_grad(x, weight, grad_out, stride, padding, choices: KernelChoices) -> torch.Tensor:
    def time_both() -> tuple[float, float]:
        return tuple(
            time_once(partial(fn, x, weight, grad_out, stride, padding))
            for fn in (_native_weight_grad, _tap_weight_grad)
        )

    use_taps = choices.choose(shape_key(x, weight, stride, padding), time_both) == TAPS
    return (_tap_weight_grad if use_taps else _native_weight_grad)(x, weight, grad_out, stride, padding)


class _DepthwiseConv(torch.autograd.Function):
    """A depthwise convolution whose weight gradient comes from `_weight_grad`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, choices):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.choices = stride, padding, choices
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            mask = (True, False, False)
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0), weight.shape[0], mask
            )[0]
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, weight, grad_out, ctx.stride, ctx.padding, ctx.choices)
        if ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


def _same_padding(module: nn.Conv2d) -> bool:
    # timm's Conv2dSame pads each input itself ("same" padding computed from the input size).
    return type(module).__name__ == "Conv2dSame"


def _qualifies(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
        and tuple(module.dilation) == (1, 1)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def _forward(module: nn.Conv2d, choices: KernelChoices, x: torch.Tensor) -> torch.Tensor:
    if not (torch.is_grad_enabled() and module.weight.requires_grad and x.device.type == "cpu"):
        return type(module).forward(module, x)
    padding = tuple(module.padding)
    if _same_padding(module):
        from timm.layers import pad_same

        x, padding = pad_same(x, module.kernel_size, module.stride, module.dilation), (0, 0)
    return _DepthwiseConv.apply(x, module.weight, module.bias, tuple(module.stride), padding, choices)


@contextmanager
def fast_depthwise(model: nn.Module, enabled: bool = True, choices: KernelChoices | None = None) -> Iterator[int]:
    """Within the block, `model`'s depthwise convolutions compute weight gradients the faster way for each shape.

    Outputs and gradients are unchanged (to float rounding); only CPU training with gradients is affected, and the
    modules get their own forward back when the block ends.

    Args:
        model: Any model; its depthwise ``nn.Conv2d`` layers (groups == channels, no dilation) are affected.
        enabled: False leaves the model as it is (a convenience for callers with a switch).
        choices: Which kernel each shape uses (a run passes its machine's and its record's, so that the same seed
            gives the same weights); None times each new shape in this block only.

    Yields:
        The number of layers affected.

    Example:
        >>> conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        >>> with fast_depthwise(conv) as n:
        ...     conv(torch.randn(2, 8, 4, 4)).sum().backward()
        >>> n, conv.weight.grad.shape
        (1, torch.Size([8, 1, 3, 3]))
    """
    patched = [m for m in model.modules() if _qualifies(m)] if enabled else []
    choices = choices if choices is not None else KernelChoices(None)
    for module in patched:
        module.forward = partial(_forward, module, choices)
    try:
        yield len(patched)
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)
