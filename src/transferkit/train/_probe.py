"""The linear-probe phase on cached features: features from the on-disk cache, the head by full-batch L-BFGS."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from transferkit._console import console
from transferkit._figures import balanced_accuracy, confusion_counts, macro_f1
from transferkit.config import TrainConfig
from transferkit.data import ImageSource, Preprocessing
from transferkit.train._tracker import PhaseContext, Tracker
from transferkit.train.features import run_features
from transferkit.train.imbalance import balanced_class_weights
from transferkit.train.linear_head import LbfgsHead
from transferkit.train.loop import EpochResult

__all__ = ["LBFGS_ITERATIONS", "lbfgs_epochs", "probe_features", "run_lbfgs_phase"]

LBFGS_ITERATIONS = 100
"""L-BFGS iterations of a probe phase, spread over its epochs (each epoch at least 20); it stops early once
converged. On Fashion-MNIST features (800 images, 1,280 dimensions) the solve has converged well before 100."""
_MIN_PER_EPOCH = 20
# Figures closer than this to the previous chunk's print alike: the solve has converged.
_SAME = 1e-5


def probe_features(
    model: nn.Module, config: TrainConfig, pre: Preprocessing, train: ImageSource, val: ImageSource
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and validation features (from the on-disk cache when they are there) and labels."""

    def features(source: ImageSource, what: str) -> torch.Tensor:
        cached = run_features(model, config, source, pre, what)
        return torch.from_numpy(np.array(cached))  # a private, writable copy of the memory map

    return (
        features(train, "train"),
        torch.from_numpy(train.labels.copy()),
        features(val, "val"),
        torch.from_numpy(val.labels.copy()),
    )


def run_lbfgs_phase(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    config: TrainConfig,
    tracker: Tracker,
    *,
    index: int,
    name: str,
    epochs: int,
    first_epoch: int,
    start_epoch: int,
    fit_on: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[EpochResult]:
    """Fit the model's head by L-BFGS, one chunk of iterations per "epoch", each logged like an epoch.

    `fit_on` (features, labels) replaces the training features in the fit (e.g. clean and augmented views
    together); the logged training figures stay those of the clean training features.

    After every chunk the folded head is copied into the model's classifier and handed to `tracker`
    (metrics, best and last checkpoints, early stopping). The solve is deterministic, so a resumed run
    (`start_epoch` after `first_epoch`) replays the chunks before `start_epoch` without logging them.
    """
    feats, labels, vfeats, vlabels = data
    classifier = model.get_classifier()
    n_classes = classifier.out_features
    if config.sampler == "balanced":
        console.print(
            f"{name}: the L-BFGS head solve sees every image once per iteration, so --sampler balanced does not apply "
            "to it (--class-weights balanced does)"
        )
    fit_x, fit_y = fit_on if fit_on is not None else (feats, labels)
    weight = balanced_class_weights(fit_y, n_classes) if config.class_weights == "balanced" else None
    head = LbfgsHead(
        fit_x, fit_y, n_classes, l2=config.head_l2, label_smoothing=config.label_smoothing, class_weights=weight
    )
    # The tracker saves an optimiser and a scheduler with every state; L-BFGS has a fixed step size of 1.
    scheduler = torch.optim.lr_scheduler.LambdaLR(head.optimizer, lambda _: 1.0)
    tracker.phase = PhaseContext(index, name, head.optimizer, scheduler, {}, 0)
    results: list[EpochResult] = []
    for result in lbfgs_epochs(head, data, epochs, first_epoch=first_epoch, name=name, start_epoch=start_epoch):
        head.fold_into(classifier)
        results.append(result)
        if tracker(result):
            break
    return results


def lbfgs_epochs(
    head: LbfgsHead,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    epochs: int,
    *,
    first_epoch: int = 1,
    name: str = "probe",
    start_epoch: int | None = None,
) -> Iterator[EpochResult]:
    """Run `head`'s solve in `epochs` chunks of iterations; yield each chunk's figures as an epoch.

    Once a chunk changes none of the figures, the solve has converged and every later chunk would repeat
    the last epoch: the phase ends there, saying so once. Chunks before `start_epoch` are run (the solve is
    deterministic) but not yielded, so a resumed phase continues from the same iterate. The caller folds the
    head into its classifier after each chunk.
    """
    feats, labels, vfeats, vlabels = data
    per_epoch = max(_MIN_PER_EPOCH, math.ceil(LBFGS_ITERATIONS / epochs))
    last = first_epoch + epochs - 1
    previous: tuple[float, ...] | None = None
    for epoch in range(first_epoch, last + 1):
        began = time.perf_counter()
        head.run(per_epoch)
        figures = (*head.metrics(feats, labels), *head.metrics(vfeats, vlabels))
        if previous is not None and all(abs(a - b) <= _SAME for a, b in zip(figures, previous, strict=True)):
            rest = f"epoch {epoch}" if epoch == last else f"epochs {epoch}-{last}"
            console.print(
                f"{name}: the L-BFGS solve converged ({head.iterations} iterations); {rest} would repeat epoch "
                f"{epoch - 1}, so the phase ends there"
            )
            return
        previous = figures
        if start_epoch is not None and epoch < start_epoch:
            continue
        n = head.linear.out_features
        confusion = confusion_counts(vlabels.numpy(), head.logits(vfeats).argmax(1).numpy(), n)
        yield EpochResult(
            epoch, name, *figures, 1.0, time.perf_counter() - began, 0, balanced_accuracy(confusion),
            macro_f1(confusion), confusion.tolist(),
        )  # fmt: skip
