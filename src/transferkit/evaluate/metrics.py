"""Accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

__all__ = ["PREDICTION_FIGURES", "ClassificationMetrics", "classification_metrics", "figure_for", "prediction_figure"]

PREDICTION_FIGURES = ("accuracy", "balanced-accuracy", "macro-f1")
"""The `TrainConfig.select_by` choices that predictions alone give (a loss also needs probabilities)."""


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


def figure_for(select_by: str) -> str:
    """The figure that ranks models of different kinds for `select_by`: itself when predictions give it, else
    accuracy (an SVM has no probabilities to take a loss of).

    Example:
        >>> figure_for("macro-f1"), figure_for("loss")
        ('macro-f1', 'accuracy')
    """
    return select_by if select_by in PREDICTION_FIGURES else "accuracy"


def prediction_figure(metrics: ClassificationMetrics, select_by: str) -> float:
    """The figure `select_by` names, of `metrics`; accuracy for a choice predictions cannot give (``loss``).

    Example:
        >>> m = classification_metrics(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), ["a", "b"])
        >>> prediction_figure(m, "accuracy"), prediction_figure(m, "balanced-accuracy"), prediction_figure(m, "loss")
        (0.75, 0.5, 0.75)
    """
    if select_by == "balanced-accuracy":
        return metrics.balanced_accuracy
    if select_by == "macro-f1":
        return metrics.macro_f1
    return metrics.accuracy
