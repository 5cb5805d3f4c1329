"""The training loop: one epoch of training, one pass of evaluation, nothing hidden."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from transferkit._console import console
from transferkit._console import progress as progress_bar
from transferkit._figures import balanced_accuracy, confusion_counts, macro_f1
from transferkit.models.freezing import set_train_mode
from transferkit.train.distributed import DistContext, unwrap
from transferkit.train.precision import MixedPrecision

__all__ = [
    "EpochProgress",
    "EpochResult",
    "StepSettings",
    "TrainingDivergedError",
    "evaluate_loader",
    "fit",
    "train_one_epoch",
]


class TrainingDivergedError(ValueError):
    """Too many consecutive steps with a non-finite loss or gradient; the last good checkpoint is kept."""


@dataclass
class EpochResult:
    """Figures of one epoch."""

    epoch: int
    phase: str
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    skipped_steps: int = 0
    val_balanced_acc: float = float("nan")
    """Mean per-class recall on the validation data."""
    val_macro_f1: float = float("nan")
    """Mean per-class F1 on the validation data."""
    confusion: list[list[int]] | None = field(default=None, repr=False, compare=False)
    """The validation confusion matrix (for experiment loggers; not written to metrics.jsonl)."""

    def to_dict(self) -> dict:
        row = asdict(self)
        row.pop("confusion")
        return row

    @classmethod
    def from_row(cls, row: dict) -> EpochResult:
        """An epoch from its metrics.jsonl row (`to_dict`); keys it does not know (other versions' rows) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass
class EpochProgress:
    """Where an epoch stands after `step` optimisation steps: enough to continue it exactly after a restart."""

    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    lr: float = 0.0
    seconds: float = 0.0
    skipped_steps: int = 0
    bad_in_row: int = 0
    """Consecutive steps skipped for a non-finite loss or gradient (carried across epochs)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepSettings:
    """How every training step of a run is taken: the same for each phase, passed down as one object."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    loss_fn: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    dist: DistContext = field(default_factory=DistContext)
    """Data-parallel context: loaders yield this process's slice of each global batch; figures are summed over
    processes, and every process skips a step when any one saw a non-finite loss."""
    amp: MixedPrecision = field(default_factory=MixedPrecision)
    """Autocast and fp16 gradient scaling (CUDA), channels-last inputs; the default is plain fp32 as given."""
    keep_bn_stats: bool = False
    """BatchNorm layers normalise with their running statistics and keep them (see `set_train_mode`)."""
    max_bad_steps: int | None = None
    """Consecutive non-finite steps that abort training; None never aborts."""
    mix: Callable | None = None
    """MixUp / CutMix of each training batch (`_mix.BatchMix`): ``mix(inputs, targets, epoch=, step=)`` returns the
    mixed batch and soft targets; None trains on the batches as they come."""


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: StepSettings,
    description: str = "train",
    *,
    progress: EpochProgress | None = None,
    on_step: Callable[[EpochProgress], None] | None = None,
    epoch: int = 0,
) -> tuple[float, float]:
    """One pass over `loader`; returns mean loss and accuracy on the training batches.

    A step whose loss or gradient is NaN or infinite is skipped (no weight update, the schedule still
    advances) with a warning; `settings.max_bad_steps` such steps in a row raise `TrainingDivergedError`.

    Args:
        progress: Continue from this position (updated in place); the loader must already start at
            `progress.step` (see `EpochBatchSampler.set_position`).
        on_step: Called after every step with the updated progress (periodic checkpoints, Ctrl-C).
        epoch: The epoch's number, which (with the step) seeds `settings.mix`.
    """
    dist, amp, device, loss_fn = settings.dist, settings.amp, settings.device, settings.loss_fn
    max_bad_steps = settings.max_bad_steps
    set_train_mode(model, settings.keep_bn_stats)
    p = progress if progress is not None else EpochProgress()
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(loader), completed=p.step, status="")
        for inputs, targets in loader:
            inputs, targets = amp.inputs(inputs.to(device, non_blocking=True)), targets.to(device, non_blocking=True)
            soft = targets
            if settings.mix is not None:  # train accuracy stays that of the labels the images came with
                inputs, soft = settings.mix(inputs, targets, epoch=epoch, step=p.step)
            with amp.autocast():
                logits = model(inputs)
                loss = loss_fn(logits, soft)
            optimizer.zero_grad(set_to_none=True)
            n, ok = targets.shape[0], bool(torch.isfinite(loss))
            loss_sum, correct, seen = (
                (loss.item() * n, (logits.argmax(1) == targets).sum().item(), n) if ok else (0, 0, 0)
            )
            if dist.enabled:
                # One all_reduce per step: global figures, the global batch size, and whether every rank can step
                # (a rank that skipped backward alone would leave the others waiting for its gradients).
                total = dist.sum([loss_sum, correct, seen, n, float(not ok)]).tolist()
                loss_sum, correct, seen, ok = total[0], int(total[1]), int(total[2]), total[4] == 0
                # DDP averages gradients over ranks; weighting by the slice's share makes that the global-batch mean.
                loss = loss * (n * dist.world_size / total[3])
            loss_ok = ok
            if ok:
                amp.backward(loss, optimizer)
                ok = _grads_finite(optimizer)
            if ok:
                amp.step(optimizer)
                p.loss_sum += loss_sum
                p.correct += correct
                p.seen += seen
                p.bad_in_row = 0
            elif amp.skip():
                optimizer.zero_grad(set_to_none=True)
                p.skipped_steps += 1  # an fp16 overflow: the scaler lowers its scale, not a sign of divergence
            else:
                optimizer.zero_grad(set_to_none=True)
                p.skipped_steps += 1
                p.bad_in_row += 1
                what = "loss" if not loss_ok else "gradient"
                console.print(
                    f"[yellow]warning:[/yellow] {description} step {p.step + 1}: non-finite {what}, step skipped"
                )
                if max_bad_steps is not None and p.bad_in_row >= max_bad_steps:
                    raise TrainingDivergedError(
                        f"training diverged: {p.bad_in_row} steps in a row had a non-finite loss or gradient "
                        f"({description}, step {p.step + 1}). The last good checkpoint is kept; try a lower "
                        "learning rate, or check the data."
                    )
            with warnings.catch_warnings():
                # A skipped first step means optimizer.step() never ran yet; the schedule advances regardless.
                warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`", UserWarning)
                scheduler.step()
            p.step += 1
            bar.update(task, advance=1, status=f"loss {p.loss_sum / max(p.seen, 1):.4f}")
            if on_step is not None:
                on_step(p)
    return p.loss_sum / max(p.seen, 1), p.correct / max(p.seen, 1)


def _grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    grads = [q.grad for group in optimizer.param_groups for q in group["params"] if q.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]).isfinite().all())


@torch.inference_mode()
def evaluate_loader(
    model: nn.Module,
    loader: Iterable,
    loss_fn: nn.Module,
    device: torch.device,
    description: str = "eval",
    amp: MixedPrecision | None = None,
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Mean loss, accuracy, and all logits and labels of `loader` (model in eval mode)."""
    amp = amp or MixedPrecision()
    model.eval()
    logits_all, labels_all = [], []
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(loader), status="")
        for inputs, targets in loader:
            with amp.autocast():
                logits_all.append(model(amp.inputs(inputs.to(device))).float().cpu())
            labels_all.append(targets)
            bar.update(task, advance=1)
    logits, labels = torch.cat(logits_all), torch.cat(labels_all)
    loss = loss_fn(logits, labels).item() if len(labels) else float("nan")
    acc = (logits.argmax(1) == labels).float().mean().item() if len(labels) else float("nan")
    return loss, acc, logits, labels


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    settings: StepSettings,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    phase: str,
    first_epoch: int = 1,
    on_epoch: Callable[[EpochResult], bool] | None = None,
    start: EpochProgress | None = None,
    on_step: Callable[[int, EpochProgress], None] | None = None,
    eval_model: nn.Module | None = None,
) -> list[EpochResult]:
    """Train for `epochs`, evaluating after each; `on_epoch` returns True to stop early.

    Validation loss is the plain cross-entropy (no label smoothing) so runs are comparable. Under data parallelism
    `val_loader` yields this process's share of the validation data, and the figures are summed over processes.

    Args:
        start: Continue `first_epoch` from this position instead of its beginning (resume).
        on_step: Called as ``on_step(epoch, progress)`` after every training step.
        eval_model: Validate this module instead of `model` (an average of its weights).
    """
    dist, device, amp = settings.dist, settings.device, settings.amp
    eval_loss = nn.CrossEntropyLoss()
    results = []
    bad_in_row = start.bad_in_row if start is not None else 0
    for epoch in range(first_epoch, first_epoch + epochs):
        lr = max(group["lr"] for group in optimizer.param_groups)
        if start is not None and epoch == first_epoch:
            progress = start
            if progress.step == 0:  # saved at the end of the previous epoch: this one has not begun
                progress.lr = lr
        else:
            progress = EpochProgress(lr=lr, bad_in_row=bad_in_row)
        # A loader of whole batches (batch_size=None) has its batch sampler as its sampler.
        sampler = getattr(train_loader, "batch_sampler", None) or getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_position"):
            sampler.set_position(epoch, progress.step)
        began, seconds_before = time.perf_counter(), progress.seconds

        def step_hook(p: EpochProgress, epoch: int = epoch, began: float = began, before: float = seconds_before):
            p.seconds = before + time.perf_counter() - began
            if on_step is not None:
                on_step(epoch, p)

        train_loss, train_acc = train_one_epoch(
            model, train_loader, optimizer, scheduler, settings, f"{phase} epoch {epoch}", progress=progress,
            on_step=step_hook, epoch=epoch,
        )  # fmt: skip
        bad_in_row = progress.bad_in_row
        # The bare model: a DDP wrapper would synchronise in forward, and shards may differ in batch count.
        val_loss, val_acc, logits, labels = evaluate_loader(
            eval_model if eval_model is not None else unwrap(model), val_loader, eval_loss, device, "validate", amp
        )
        confusion = confusion_counts(labels.numpy(), logits.argmax(1).numpy(), logits.shape[1])
        if dist.enabled:
            n = len(labels)
            total = dist.sum([val_loss * n, (logits.argmax(1) == labels).sum().item(), n]).tolist()
            val_loss, val_acc = total[0] / total[2], total[1] / total[2]
            confusion = dist.sum(confusion.ravel().tolist()).numpy().reshape(confusion.shape)
        seconds = seconds_before + time.perf_counter() - began
        result = EpochResult(
            epoch, phase, train_loss, train_acc, val_loss, val_acc, progress.lr, seconds, progress.skipped_steps,
            balanced_accuracy(confusion), macro_f1(confusion), confusion.tolist(),
        )  # fmt: skip
        results.append(result)
        if on_epoch is not None and on_epoch(result):
            break
    return results
