"""Mixed precision on GPUs (autocast, the fp16 gradient scaler) and channels-last inputs on any device.

Precision is CUDA-only: on a CPU autocast and scaling are pass-throughs and training stays in fp32, so CPU
runs (and their exact resume) are unaffected by the `precision` setting. Channels-last applies on any device
(oneDNN's CPU convolutions prefer it too).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["MixedPrecision"]

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """How a step computes: autocast dtype, gradient scaling and input memory format.

    Example:
        >>> amp = MixedPrecision("bf16", torch.device("cpu"))
        >>> amp.enabled      # autocast is used on CUDA only
        False
    """

    def __init__(self, precision: str = "fp32", device: torch.device | None = None, channels_last: bool = False):
        device = device or torch.device("cpu")
        cuda = device.type == "cuda"
        self.dtype = _DTYPES[precision]
        self.enabled = cuda and self.dtype is not None
        self.channels_last = channels_last
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled and precision == "fp16" else None
        self._unscaled = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass; with fp16 the loss is scaled and the gradients unscaled again before they are checked."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        self._unscaled = True

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()
        self._unscaled = False

    def skip(self) -> bool:
        """A step is skipped for a non-finite gradient; True when that is an fp16 overflow the scaler handles.

        Overflows are expected while the scaler finds its scale: they lower it and are not a sign of divergence.
        """
        if self.scaler is None or not self._unscaled:
            return False
        self.scaler.update()
        self._unscaled = False
        return True
