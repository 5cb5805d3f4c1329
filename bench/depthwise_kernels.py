"""Both depthwise weight-gradient kernels timed on every depthwise shape of EfficientNet-Lite0.

Prints, per shape, PyTorch's kernel and the tap sum (best of 3 after an untimed call) and their ratio; run it on
a quiet and on a busy machine side by side to see how load turns the close calls.

    python bench/depthwise_kernels.py [BATCH]      # default batch 32, image sizes 32 to 224 px
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from timm.layers import pad_same

from transferkit.models import build_model
from transferkit.train import _depthwise


def _shapes(model: torch.nn.Module) -> list[tuple]:
    """(input C, H, W), weight shape, stride, padding of every depthwise layer, for each image size."""
    seen: list[tuple] = []

    def hook(module, inputs, output) -> None:
        if _depthwise._qualifies(module):
            key = (tuple(inputs[0].shape[1:]), tuple(module.weight.shape), tuple(module.stride), tuple(module.padding))
            if key not in seen:
                seen.append(key)

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        for px in (32, 48, 64, 96, 128, 224):
            model(torch.randn(1, 3, px, px))
    for h in hooks:
        h.remove()
    return seen


def _best(fn, *args) -> float:
    fn(*args)
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - began)
    return best


def main(batch: int) -> None:
    model = build_model("efficientnet_lite0", 10, pretrained=False).model.eval()
    close = 0
    shapes = _shapes(model)
    for (c, h, w), weight_shape, stride, padding in shapes:
        x = torch.randn(batch, c, h, w).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(weight_shape)
        if padding == (0, 0):  # timm's "same" padding: the layer pads its input itself
            x = pad_same(x, weight_shape[-2:], stride, (1, 1))
        grad = torch.randn_like(F.conv2d(x, weight, None, stride, padding, 1, c))
        args = (x, weight, grad, stride, padding)
        native, taps = _best(_depthwise._native_weight_grad, *args), _best(_depthwise._tap_weight_grad, *args)
        close += 0.5 <= native / taps <= 2
        print(
            f"C={c:5d} in={h:3d} k={weight_shape[-1]} s={stride[0]}: native {native * 1e3:8.2f} ms, "
            f"taps {taps * 1e3:8.2f} ms, native/taps {native / taps:6.2f}",
            flush=True,
        )
    print(f"{close} of {len(shapes)} shapes within a factor of 2")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 32)
