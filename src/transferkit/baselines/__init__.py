"""Classical baselines: what a user would get without transfer, or with frozen features and no training.

The ``baseline`` strategy (`transferkit.strategies`) runs through here: logistic regression and an RBF-SVM,
C chosen by cross-validation on the training images, on downsampled raw pixels and on the frozen pretrained
features; validation chooses one. `compare` runs it by default and states the transfer gain over it.
"""

from transferkit.baselines.api import BaselineOutcome, baseline_metrics, run_baseline
from transferkit.baselines.classical import CLASSICAL_MODELS, ClassicalFit, fit_classical
from transferkit.baselines.inputs import PIXEL_SIDE, PixelSpec, pixel_inputs
from transferkit.baselines.run import BaselineRun, is_baseline_run

__all__ = [
    "CLASSICAL_MODELS",
    "PIXEL_SIDE",
    "BaselineOutcome",
    "BaselineRun",
    "ClassicalFit",
    "baseline_metrics",
    "PixelSpec",
    "fit_classical",
    "is_baseline_run",
    "pixel_inputs",
    "run_baseline",
]
