"""Pooled features of a frozen backbone, for training a linear head without re-running the backbone."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from transferkit._console import progress

__all__ = ["extract_features"]


@torch.inference_mode()
def extract_features(
    model: nn.Module, loader: Iterable, device: torch.device, description: str = "features"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the backbone up to its pooled pre-logits features for every batch of `loader`.

    The model stays in eval mode, so BatchNorm uses its pretrained statistics, exactly as a frozen
    backbone does during linear-probe training.
    """
    model.eval()
    feats, labels = [], []
    with progress() as bar:
        task = bar.add_task(description, total=len(loader), status="")
        for inputs, targets in loader:
            x = model.forward_features(inputs.to(device))
            feats.append(model.forward_head(x, pre_logits=True).float().cpu())
            labels.append(targets)
            bar.update(task, advance=1)
    return torch.cat(feats), torch.cat(labels)
