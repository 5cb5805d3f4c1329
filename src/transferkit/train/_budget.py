"""`--time-budget`: fit each phase's epochs into the wall time left, planned from a few timed real steps.

The plan is saved in the run directory (budget.json) so that a resumed run keeps the same schedule. At each epoch
end of the run's last phase the tracker (given the deadline) checks the plan against the epochs' real pace: when the
planned epochs would not fit, it shortens the phase to the epochs that do, and the learning-rate schedule with it, so
that the decay still ends at the last epoch trained instead of being cut off on the way down; when not even one
more epoch fits, it stops. When the epochs run faster than planned and the plan had been cut below the epochs asked
for, the phase is lengthened towards them the same way, but only in its first half, while the cosine is still near
its peak (later, a longer decay would raise a learning rate that is already coming down).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from transferkit._console import console
from transferkit.models.freezing import set_train_mode
from transferkit.train.distributed import DistContext
from transferkit.train.loop import StepSettings
from transferkit.train.rundir import RunDir

__all__ = ["EpochCost", "TimeBudget", "measure_epoch", "plan_epochs"]

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
    settings: StepSettings,
) -> EpochCost:
    """Time a few training steps (data loading included) and one validation batch, then put everything back.

    The steps are real (forward, backward, optimiser step) so that the estimate holds, but the weights, buffers and
    optimiser state are restored afterwards: the run that follows is the one it would have been.
    """
    device, amp, loss_fn = settings.device, settings.amp, settings.loss_fn
    saved_model = copy.deepcopy(module.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    n_train, n_val = len(train_loader), len(val_loader)  # type: ignore[arg-type]
    set_train_mode(module, settings.keep_bn_stats)
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


class TimeBudget:
    """Each trained phase gets the epochs that fit in what is left of `seconds`, planned from measured steps.

    Args:
        start: `time.perf_counter()` when the run began (the clock includes setting up).
        seconds: The budget; None plans nothing.
        run: Where budget.json is kept.
        resumed: A resumed run replays the saved plan and sets no new deadline.
    """

    def __init__(self, start: float, seconds: float | None, run: RunDir, resumed: bool) -> None:
        self.path = run.path / "budget.json"
        self.seconds = seconds
        self.deadline = start + seconds if seconds is not None and not resumed else None
        self.saved: dict = {}
        if resumed and self.path.is_file():
            self.saved = json.loads(self.path.read_text())

    @property
    def active(self) -> bool:
        return self.deadline is not None

    def epochs(self, name: str, wanted: int, measure, dist: DistContext) -> int:
        """The epochs phase `name` trains: the saved plan, or `wanted` cut to what `measure()` says fits."""
        if name in self.saved:
            return int(self.saved[name])
        if not self.active:
            return wanted
        cost = measure()
        left = self.deadline - time.perf_counter()
        epochs = plan_epochs(cost, left, wanted)
        # Under torchrun every process measures; all must train the same epochs: the fewest planned wins.
        votes = dist.sum([float(epochs) if rank == dist.rank else 0.0 for rank in range(dist.world_size)])
        epochs = int(votes.min())
        console.print(
            f"time budget {self.seconds / 60:.1f} min: {left / 60:.1f} min left, an epoch of {name} measured "
            f"{cost.seconds:.0f} s ({cost.train_seconds:.0f} s training, {cost.val_seconds:.0f} s validation): "
            f"{epochs} of {wanted} epochs planned"
        )
        self.saved[name] = epochs
        if dist.is_main:
            self.path.write_text(json.dumps(self.saved, indent=2))
        return epochs

    def replan(self, name: str, epochs: int, dist: DistContext) -> None:
        """Phase `name` now trains `epochs`: saved, so that a resumed run keeps the new schedule."""
        self.saved[name] = int(epochs)
        if dist.is_main:
            self.path.write_text(json.dumps(self.saved, indent=2))
