"""Fitting a phase's epochs into a wall-time budget: time a few real steps, then plan."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from transferkit.models.freezing import set_train_mode
from transferkit.train._precision import MixedPrecision

__all__ = ["EpochCost", "measure_epoch", "plan_epochs"]

# Steps timed after the warm-up ones (the first steps also pick kernels and fill caches). Four timed steps
# misjudged 48 px Lite0 epochs on full Fashion-MNIST by -14% to +6% (201 and 246 s measured; ~232 s run).
_WARMUP_STEPS, _TIMED_STEPS = 3, 10
# Share of the time left that is planned; the rest absorbs the difference between timed steps and whole epochs.
_PLANNED_SHARE = 0.92


@dataclass
class EpochCost:
    """Measured seconds of one epoch: training steps plus the validation pass."""

    train_seconds: float
    val_seconds: float

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.val_seconds


def measure_epoch(
    module: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device,
    amp: MixedPrecision,
    keep_bn_stats: bool,
) -> EpochCost:
    """Time a few training steps (data loading included) and one validation batch, then put everything back.

    The steps are real (forward, backward, optimiser step) so that the estimate holds, but the weights, buffers and
    optimiser state are restored afterwards: the run that follows is the one it would have been.
    """
    saved_model = copy.deepcopy(module.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    n_train, n_val = len(train_loader), len(val_loader)  # type: ignore[arg-type]
    set_train_mode(module, keep_bn_stats)
    times = []
    began = time.perf_counter()
    for step, (inputs, targets) in enumerate(train_loader):
        loss = loss_fn(module(amp.inputs(inputs.to(device))), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        now = time.perf_counter()
        times.append(now - began)
        began = now
        if step + 1 >= min(n_train, _WARMUP_STEPS + _TIMED_STEPS):
            break
    timed = times[_WARMUP_STEPS:] or times
    module.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_optimizer)
    optimizer.zero_grad(set_to_none=True)
    module.eval()
    val_seconds = 0.0
    with torch.inference_mode():
        for inputs, _ in val_loader:
            module(amp.inputs(inputs.to(device)))  # warm-up: the first evaluation batch picks its kernels
            began = time.perf_counter()
            module(amp.inputs(inputs.to(device)))
            val_seconds = (time.perf_counter() - began) * n_val
            break
    return EpochCost(sum(timed) / len(timed) * n_train, val_seconds)


def plan_epochs(cost: EpochCost, seconds_left: float, wanted: int) -> int:
    """Epochs of `cost` that fit in `seconds_left` (at least 1, at most `wanted`), keeping 8% in reserve.

    Example:
        >>> plan_epochs(EpochCost(train_seconds=100.0, val_seconds=5.0), seconds_left=1000.0, wanted=20)
        8
    """
    fit = math.floor(seconds_left * _PLANNED_SHARE / max(cost.seconds, 1e-9))
    return max(1, min(int(wanted), fit))
