"""Acting on class imbalance: loss weights per class and a class-balanced sample order."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["balanced_class_weights", "balanced_order"]


def balanced_class_weights(labels: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Weight ``n / (k * n_c)`` for class c with n_c of the n images, k the classes present (scikit-learn's rule).

    Every class then carries the same total weight in the loss; a class without images gets weight 0 (no image
    of it can be weighted anyway).

    Example:
        >>> [round(w, 4) for w in balanced_class_weights(np.array([0, 0, 0, 1]), 2).tolist()]
        [0.6667, 2.0]
    """
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def balanced_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """As many indices as `labels` has, drawn with replacement so that every present class is equally likely.

    Each image is drawn with probability proportional to 1 / (images of its class): a class of 5 images is
    then seen as often as one of 200, its images about 40 times as often each.
    """
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)
