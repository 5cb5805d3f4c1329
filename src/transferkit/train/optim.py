"""Parameter groups, optimisers and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from transferkit.config import TrainConfig

__all__ = ["WarmupCosine", "build_optimizer", "build_scheduler", "param_groups"]


def param_groups(
    model: nn.Module,
    head: list[str],
    *,
    base_lr: float,
    head_lr_mult: float,
    weight_decay: float,
    layer_decay: float = 1.0,
) -> list[dict]:
    """Split trainable parameters into (pretrained | head) x (decay | no decay) groups.

    Norm weights and biases (1-D tensors) get no weight decay: shrinking them toward zero only hurts.
    Each group carries a `name` so logs and tests can tell them apart.

    Args:
        layer_decay: Below 1, layer-wise learning-rate decay: the backbone's stages (`backbone_stages`, stem first)
            get their own groups, named ``backbone.K`` (K the stage), at ``base_lr * layer_decay ** (S - K)`` for
            S stages, so the last stage learns at ``base_lr * layer_decay`` and the stem slowest; the head keeps
            ``base_lr * head_lr_mult``. 1 (the default): one rate for the whole backbone.

    Example:
        >>> from transferkit.models import build_model, head_keys
        >>> model = build_model("tiny_resnet", 3, pretrained=False).model
        >>> groups = param_groups(model, head_keys(model), base_lr=1e-3, head_lr_mult=10, weight_decay=0.01,
        ...                       layer_decay=0.5)
        >>> [(g["name"], g["lr"]) for g in groups if not g["name"].endswith("no-decay")][-2:]
        [('backbone.4', 0.0005), ('head', 0.01)]
    """
    head_set = set(head)
    stage_of: dict[str, int] = {}
    n_stages = 0
    if layer_decay != 1.0:
        from transferkit.models.freezing import backbone_stages

        stages = backbone_stages(model)
        n_stages = len(stages)
        stage_of = {name: stage.index for stage in stages for name in stage.param_names}
    buckets: dict[tuple[str, int, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if name in head_set else "backbone"
        # A parameter outside every stage (none in timm's models) learns at the last stage's rate.
        stage = stage_of.get(name, n_stages - 1) if part == "backbone" and stage_of else -1
        buckets.setdefault((part, stage, param.ndim > 1), []).append(param)
    groups = []
    for (part, stage, decay), params in sorted(buckets.items()):
        if part == "head":
            lr = base_lr * head_lr_mult
        else:
            lr = base_lr * (layer_decay ** (n_stages - stage) if stage >= 0 else 1.0)
        label = part if stage < 0 else f"{part}.{stage}"
        groups.append(
            {
                "name": f"{label}{'' if decay else '-no-decay'}",
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


class WarmupCosine:
    """The learning-rate factor of a step: linear warm-up, then cosine decay to zero at `total_steps`.

    An object rather than a closure so that the scheduler's state (which keeps a callable object's attributes)
    carries a schedule that `replan` changed, and a resumed run goes on with it.

    Example:
        >>> f = WarmupCosine(total_steps=10, warmup_steps=0)
        >>> f(0), f(5), f(10)
        (1.0, 0.5, 0.0)
        >>> f.replan(5); f(5)
        0.0
    """

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = min(int(warmup_steps), max(self.total_steps - 1, 0))

    def replan(self, total_steps: int) -> None:
        """End the decay at `total_steps` instead (a time budget whose epochs run slower or faster than planned)."""
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero, stepped once per batch (`WarmupCosine`, shared by every group)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps))
