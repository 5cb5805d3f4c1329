"""The training loop: one epoch of training, one pass of evaluation, nothing hidden."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from transferkit._console import progress
from transferkit.models.freezing import set_train_mode

__all__ = ["EpochResult", "evaluate_loader", "fit", "train_one_epoch"]


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

    def to_dict(self) -> dict:
        return asdict(self)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    device: torch.device,
    description: str = "train",
) -> tuple[float, float]:
    """One pass over `loader`; returns mean loss and accuracy on the training batches."""
    set_train_mode(model)
    total_loss, correct, seen = 0.0, 0, 0
    with progress() as bar:
        task = bar.add_task(description, total=len(loader), status="")
        for inputs, targets in loader:
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            logits = model(inputs)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = targets.shape[0]
            total_loss += loss.item() * n
            correct += (logits.argmax(1) == targets).sum().item()
            seen += n
            bar.update(task, advance=1, status=f"loss {total_loss / seen:.4f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.inference_mode()
def evaluate_loader(
    model: nn.Module, loader: Iterable, loss_fn: nn.Module, device: torch.device, description: str = "eval"
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Mean loss, accuracy, and all logits and labels of `loader` (model in eval mode)."""
    model.eval()
    logits_all, labels_all = [], []
    with progress() as bar:
        task = bar.add_task(description, total=len(loader), status="")
        for inputs, targets in loader:
            logits_all.append(model(inputs.to(device)).float().cpu())
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
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    device: torch.device,
    phase: str,
    first_epoch: int = 1,
    on_epoch: Callable[[EpochResult], bool] | None = None,
) -> list[EpochResult]:
    """Train for `epochs`, evaluating after each; `on_epoch` returns True to stop early.

    Validation loss is the plain cross-entropy (no label smoothing) so runs are comparable.
    """
    eval_loss = nn.CrossEntropyLoss()
    results = []
    for epoch in range(first_epoch, first_epoch + epochs):
        start = time.perf_counter()
        lr = max(group["lr"] for group in optimizer.param_groups)
        train_loss, train_acc = train_one_epoch(
            model, train_loader, optimizer, scheduler, loss_fn, device, f"{phase} epoch {epoch}"
        )
        val_loss, val_acc, _, _ = evaluate_loader(model, val_loader, eval_loss, device, "validate")
        result = EpochResult(epoch, phase, train_loss, train_acc, val_loss, val_acc, lr, time.perf_counter() - start)
        results.append(result)
        if on_epoch is not None and on_epoch(result):
            break
    return results
