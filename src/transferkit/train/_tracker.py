"""Per-epoch bookkeeping of a run: metrics, best and resumable checkpoints, early stopping, Ctrl-C."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from transferkit._console import console
from transferkit.train._interrupt import clear_stop, request_stop
from transferkit.train._kernel_choices import KernelChoices
from transferkit.train._resume import warn
from transferkit.train._rng import capture_rng
from transferkit.train.checkpoint import checkpoint_problem, save_checkpoint, save_training_state
from transferkit.train.distributed import DistContext
from transferkit.train.loop import EpochProgress, EpochResult
from transferkit.train.rundir import RunDir

__all__ = ["PhaseContext", "Tracker", "catch_interrupts"]

STATE_FORMAT = 1
_REPLAN_SHARE = 0.92
"""Share of the time left that a re-planned schedule plans (as the budget's first plan does)."""
_LENGTHEN_BEFORE = 0.5
"""A phase may be lengthened only while fewer than this share of its planned epochs are done."""


def _clock() -> float:
    return time.perf_counter()


SELECTION_FIELDS = {
    "accuracy": "val_acc", "balanced-accuracy": "val_balanced_acc", "macro-f1": "val_macro_f1", "loss": "val_loss",
}  # fmt: skip
"""The `EpochResult` field each `TrainConfig.select_by` choice compares (a loss is compared negated: lower wins)."""


@dataclass
class PhaseContext:
    """What a training-state save needs to know about the phase that is running."""

    index: int
    name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    every_steps: int = 0
    """Save mid-epoch every this many steps (0: only at epoch ends)."""
    extras: dict = field(default_factory=dict)
    """After-step extras (`_step_extras`) by name, whose state the resumable checkpoint keeps."""
    best_model: nn.Module | None = None
    """What the best checkpoint saves instead of the tracked model (the weight average); None: the model."""
    replan: Callable[[int], None] | None = None
    """Ends the phase (and its learning-rate decay) at the given epoch instead; None: its length is fixed."""
    first_epoch: int = 1
    """The first epoch this process trains in the phase."""
    most_epoch: int = 0
    """The latest epoch `replan` may move the phase's end to (the epochs asked for, before the budget's plan)."""
    started: float = field(default_factory=lambda: _clock())
    """`_clock()` when the phase's epochs began in this process."""


class Tracker:
    """Logs each epoch, keeps the best and the resumable `last` checkpoints, and decides early stopping."""

    def __init__(
        self,
        run: RunDir,
        model: nn.Module,
        meta: dict,
        patience: int | None,
        data: dict,
        dist: DistContext | None = None,
        kernels: KernelChoices | None = None,
        select_by: str = "accuracy",
    ) -> None:
        self.run, self.model, self.meta, self.patience, self.data = run, model, meta, patience, data
        self.kernels = kernels
        # Under torchrun every process tracks (the decisions must agree); only rank 0 writes.
        self.dist = dist or DistContext()
        self.select_by = select_by
        self._field = SELECTION_FIELDS[select_by]
        self._sign = -1.0 if select_by == "loss" else 1.0
        self.best_acc, self.best_epoch, self.bad_epochs, self.stopped = -1.0, 0, 0, False
        self.best_score = self._unset
        """The best epoch's `select_by` figure, negated for a loss (its accuracy is `best_acc`)."""
        self.listeners: list[Callable[[dict, dict[str, float], list | None], None]] = []
        """Called (on rank 0) with each epoch's row, each parameter group's rate and the validation confusion."""
        self.deadline: float | None = None
        """perf_counter() time by which training should end (time budget); None: no limit."""
        self.final_epoch = 0
        """The run's last planned epoch: stopping for the budget is only announced before it."""
        self.phase: PhaseContext | None = None
        self.interrupted = False
        self.last_metrics: dict | None = None
        self._bad_in_row = 0

    @property
    def _unset(self) -> float:
        """The score before any epoch: below every accuracy, and below every negated loss."""
        return -1e30 if self.select_by == "loss" else -1.0

    def reset_patience(self) -> None:
        self.bad_epochs = 0

    def state(self) -> dict:
        return {
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
            "last_metrics": self.last_metrics,
        }

    def load_state(self, state: dict) -> None:
        self.best_acc, self.best_epoch = float(state["best_acc"]), int(state["best_epoch"])
        self.best_score = float(state.get("best_score", self.best_acc))  # states saved before select_by: accuracy
        self.bad_epochs, self.stopped = int(state["bad_epochs"]), bool(state["stopped"])
        self.last_metrics = state.get("last_metrics")
        problem = checkpoint_problem(self.run.best) if self.best_epoch > 0 else None
        if problem:
            # Kept as is, a damaged best would only be replaced by a better epoch, which may never come.
            warn(f"the best checkpoint (epoch {self.best_epoch}) cannot be read: {problem}; the next epoch replaces it")
            self.best_acc, self.best_epoch, self.best_score = -1.0, 0, self._unset

    def on_step(self, epoch: int, progress: EpochProgress) -> None:
        """After each training step: periodic mid-epoch save, and the save-then-stop of a Ctrl-C."""
        self._bad_in_row = progress.bad_in_row
        every = self.phase.every_steps if self.phase else 0
        if self.interrupted or (every and progress.step % every == 0):
            self.save_state(epoch, progress)
        if self.interrupted:
            self._stop_for_interrupt()

    def __call__(self, result: EpochResult) -> bool:
        if self.dist.is_main:
            self.run.append_metrics(result.to_dict())
            lrs = self._group_lrs()
            for listener in self.listeners:  # experiment loggers: a copy of the row metrics.jsonl just got
                listener(result.to_dict(), lrs, result.confusion)
        # A diverged epoch (NaN loss, often with a chance-level accuracy) must never become `best`.
        score = self._sign * float(getattr(result, self._field))
        finite = math.isfinite(result.val_loss) and math.isfinite(result.val_acc) and math.isfinite(score)
        improved = finite and score > self.best_score
        extra = "" if self.select_by in ("accuracy", "loss") else f" {self.select_by} {score:.4f}"
        console.print(
            f"epoch {result.epoch:3d} \\[{result.phase}] train loss {result.train_loss:.4f} acc "
            f"{100 * result.train_acc:5.2f}% | val loss {result.val_loss:.4f} acc {100 * result.val_acc:5.2f}%"
            f"{extra} | {result.seconds:.1f}s" + (" *" if improved else "")
        )
        self.last_metrics = result.to_dict()
        if not finite:
            console.print(
                f"epoch {result.epoch}: validation loss {result.val_loss} is not finite, so this epoch is not kept "
                "as best (training diverged? try a lower --lr)"
            )
        if improved:
            self.best_acc, self.best_epoch, self.bad_epochs = result.val_acc, result.epoch, 0
            self.best_score = score
            if self.dist.is_main:
                best = self.phase.best_model if self.phase is not None else None
                save_checkpoint(
                    self.run.best, best if best is not None else self.model,
                    {**self.meta, "epoch": result.epoch, "metrics": result.to_dict()},
                )  # fmt: skip
        else:
            self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience:
            what = "accuracy" if self.select_by == "accuracy" else self.select_by
            console.print(f"early stopping: no better validation {what} in {self.patience} epochs")
            self.stopped = True
        if self.deadline is not None and not self.stopped:
            self._keep_to_budget(result)
        # The state of "epoch done": resuming starts the next epoch at its first step.
        self.save_state(result.epoch + 1, EpochProgress(bad_in_row=self._bad_in_row))
        if self.interrupted:
            self._stop_for_interrupt()
        return self.stopped or (self._replannable and result.epoch >= self.final_epoch)

    @property
    def _replannable(self) -> bool:
        """The phase's end follows the budget's pace (its loop runs to `most_epoch`; this tracker ends it)."""
        return self.phase is not None and self.phase.replan is not None

    def _keep_to_budget(self, result: EpochResult) -> None:
        """Stop when another epoch would not fit. In a phase that can be re-planned, end it (and its decay) at the last
        epoch that fits when the planned ones would not, or, early in the phase, lengthen it towards the epochs asked
        for when more fit than were planned. Every process decides alike (the fewest epochs win)."""
        replannable = self._replannable
        if replannable and result.epoch >= self.final_epoch:
            return  # the last epoch of the schedule: the loop ends here
        now = _clock()
        if replannable:
            phase = self.phase
            done = result.epoch - phase.first_epoch + 1
            pace = max((now - phase.started) / max(done, 1), result.seconds, 1e-9)
            fits = result.epoch + math.floor(max(self.deadline - now, 0.0) * _REPLAN_SHARE / pace)
            early = done < _LENGTHEN_BEFORE * (self.final_epoch - phase.first_epoch + 1)
            last = min(fits, phase.most_epoch) if early else min(fits, self.final_epoch)
        else:
            pace = result.seconds
            last = result.epoch if now + result.seconds > self.deadline else self.final_epoch
        if self.dist.enabled:
            votes = self.dist.sum(
                [float(last) if rank == self.dist.rank else 0.0 for rank in range(self.dist.world_size)]
            )
            last = int(votes.min())
        if last == self.final_epoch:
            return
        if last > self.final_epoch:
            console.print(
                f"time budget: epochs take {pace:.0f} s, so more fit than planned; the schedule now ends at epoch "
                f"{last} (was {self.final_epoch}), its learning rate decaying to zero there"
            )
            self.phase.replan(last)
            self.final_epoch = last
            return
        if last <= result.epoch:
            if result.epoch < self.final_epoch:
                console.print(f"time budget: another epoch would not fit; stopping after epoch {result.epoch}")
                self.stopped = True
            return
        console.print(
            f"time budget: epochs take {pace:.0f} s, so {self.final_epoch} would not fit; the schedule now ends at "
            f"epoch {last}, its learning rate decaying to zero there"
        )
        self.phase.replan(last)
        self.final_epoch = last

    def _group_lrs(self) -> dict[str, float]:
        if self.phase is None:
            return {}
        groups = self.phase.optimizer.param_groups
        return {str(g.get("name", f"group{i}")): float(g["lr"]) for i, g in enumerate(groups)}

    def save_state(self, epoch: int, progress: EpochProgress) -> None:
        """Write the resumable `last` set: weights, optimiser, scheduler, RNGs, position and best-so-far."""
        phase = self.phase
        if phase is None or not self.dist.is_main:
            return
        state = {
            "format": STATE_FORMAT,
            "phase_index": phase.index,
            "phase": phase.name,
            "epoch": epoch,
            "progress": progress.to_dict(),
            "optimizer": phase.optimizer.state_dict(),
            "scheduler": phase.scheduler.state_dict(),
            "rng": capture_rng(phase.generators),
            "tracker": self.state(),
            "data": self.data,
            "world_size": self.dist.world_size,  # a resume must shard the batches the same way
            # The depthwise kernels used so far: a resume repeats the arithmetic, not only the sample order.
            "depthwise": dict(self.kernels.used) if self.kernels is not None else {},
        }
        if phase.extras:
            state["extras"] = {name: extra.state_dict() for name, extra in phase.extras.items()}
        meta = {
            **self.meta,
            "epoch": epoch - 1,  # epochs completed
            "resume": {"phase": phase.name, "epoch": epoch, "step": progress.step},
            "metrics": self.last_metrics,
        }
        save_training_state(self.run.last, self.model, meta, state)

    def _stop_for_interrupt(self) -> None:
        console.print(f"interrupted: resumable state saved to {self.run.last}; continue with --resume {self.run.path}")
        raise KeyboardInterrupt


class catch_interrupts:  # noqa: N801 - used as a context manager, named like one
    """Turn the first Ctrl-C or SIGTERM into `tracker.interrupted` (save at the next step, then stop); a second
    one quits at once.

    SIGTERM is what process managers and batch schedulers send before they kill; it gets the same chance to
    save. Passes outside the steps (feature extraction) stop within a batch (`_interrupt.stop_if_requested`).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.tracker.interrupted:
            raise KeyboardInterrupt
        self.tracker.interrupted = True
        request_stop()
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        console.print(f"{name}: stopping after this step to save a resumable checkpoint (Ctrl-C again to quit at once)")

    def __enter__(self) -> catch_interrupts:
        clear_stop()
        # Signal handlers can only be installed from the main thread (e.g. not inside a notebook worker).
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self.previous.items():
            # None: the handler was not set from Python; the default is the closest to it.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self.previous = {}
        clear_stop()
