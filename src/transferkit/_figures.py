"""Class-balanced figures from a confusion matrix: the training loop and evaluation compute them the same way."""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_accuracy", "class_figures", "confusion_counts", "macro_f1"]


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (true class x predicted class), shape (num_classes, num_classes).

    Example:
        >>> confusion_counts(np.array([0, 0, 1]), np.array([0, 1, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    flat = np.asarray(labels, np.int64) * num_classes + np.asarray(predicted, np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes the data holds (a class without images has no recall to average).

    Example:
        >>> balanced_accuracy(np.array([[9, 1], [1, 0]]))  # 90% accuracy, but the rare class is never found
        0.45
    """
    cm = np.asarray(confusion, np.float64)
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else float("nan")


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes the data holds; a class never predicted has F1 0 (as scikit-learn's zero_division=0).

    Example:
        >>> round(macro_f1(np.array([[9, 1], [1, 0]])), 3)
        0.45
    """
    cm = np.asarray(confusion, np.float64)
    support, predicted, hits = cm.sum(1), cm.sum(0), np.diag(cm)
    present = support > 0
    if not present.any():
        return float("nan")
    denominator = support + predicted  # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted)
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    return float(np.mean(f1[present]))


def class_figures(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Balanced accuracy and macro F1 of `predicted` against `labels`."""
    cm = confusion_counts(labels, predicted, num_classes)
    return balanced_accuracy(cm), macro_f1(cm)
