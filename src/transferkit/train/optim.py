"""Parameter groups, optimisers and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from transferkit.config import TrainConfig

__all__ = ["build_optimizer", "build_scheduler", "param_groups"]


def param_groups(
    model: nn.Module, head: list[str], *, base_lr: float, head_lr_mult: float, weight_decay: float
) -> list[dict]:
    """Split trainable parameters into (pretrained | head) x (decay | no decay) groups.

    Norm weights and biases (1-D tensors) get no weight decay: shrinking them toward zero only hurts.
    Each group carries a `name` so logs and tests can tell them apart.
    """
    head_set = set(head)
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if name in head_set else "backbone"
        decay = param.ndim > 1
        buckets.setdefault((part, decay), []).append(param)
    groups = []
    for (part, decay), params in sorted(buckets.items()):
        lr = base_lr * (head_lr_mult if part == "head" else 1.0)
        groups.append(
            {
                "name": f"{part}{'' if decay else '-no-decay'}",
                "params": params,
                "lr": lr,
                "weight_decay": weight_decay if decay else 0.0,
            }
        )
    return groups


def build_optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"])


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero, stepped once per batch."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
