"""Accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

__all__ = ["ClassificationMetrics", "classification_metrics"]


@dataclass
class ClassificationMetrics:
    """Figures of a classifier on a labelled set."""

    accuracy: float
    n: int
    classes: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes the data holds: accuracy as if every class were equally common."""
        present = [r for r, n in zip(self.recall, self.support, strict=True) if n]
        return float(np.mean(present)) if present else float("nan")

    @property
    def worst_recall(self) -> float:
        """The lowest recall of a class the data holds (the class the model serves worst)."""
        present = [r for r, n in zip(self.recall, self.support, strict=True) if n]
        return float(min(present)) if present else float("nan")

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes the data holds (a class with no images has no F1 to average)."""
        present = [f for f, n in zip(self.f1, self.support, strict=True) if n]
        return float(np.mean(present)) if present else 0.0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "macro_f1": self.macro_f1,
            "balanced_accuracy": self.balanced_accuracy,
            "worst_recall": self.worst_recall,
        }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> ClassificationMetrics:
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    acc = float((np.asarray(y_true) == np.asarray(y_pred)).mean()) if len(y_true) else float("nan")
    return ClassificationMetrics(
        accuracy=acc,
        n=len(y_true),
        classes=list(classes),
        precision=p.tolist(),
        recall=r.tolist(),
        f1=f.tolist(),
        support=[int(x) for x in s],
        confusion=cm.tolist(),
    )
