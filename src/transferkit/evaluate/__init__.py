"""Metrics, evaluation of trained runs, and prediction."""

from transferkit.evaluate._tta import average_probabilities, mirrored
from transferkit.evaluate.api import evaluate_run, predict_images
from transferkit.evaluate.inference import LoadedRun, load_run, run_logits
from transferkit.evaluate.metrics import ClassificationMetrics, classification_metrics

__all__ = [
    "ClassificationMetrics",
    "LoadedRun",
    "average_probabilities",
    "classification_metrics",
    "evaluate_run",
    "load_run",
    "mirrored",
    "predict_images",
    "run_logits",
]
