"""A baseline run end to end, as `train_run` does it for a network: session, data, inputs, fit, run files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit._console import console
from transferkit.baselines.run import BaselineRun, evaluate_baseline, fit_baselines, needs_features, preprocessing_of
from transferkit.config import TrainConfig
from transferkit.data import ImageSource, Preprocessing
from transferkit.evaluate.metrics import ClassificationMetrics
from transferkit.strategies import Strategy
from transferkit.train.features import run_features
from transferkit.train.setup import open_session, prepare_data, setup_model

__all__ = ["BaselineOutcome", "baseline_metrics", "run_baseline"]


@dataclass
class BaselineOutcome:
    run_dir: Path
    baselines: BaselineRun
    seconds: float
    parameters: int
    """Numbers the chosen model keeps: weights and biases, or support vectors and their coefficients."""


def run_baseline(
    config: TrainConfig, strategy: Strategy, train: ImageSource, val: ImageSource | None, run_dir: str | Path
) -> BaselineOutcome:
    """Fit the classical baselines on `train`, choose on `val` (default a stratified split), write the run."""
    start = time.perf_counter()
    session = open_session(config, run_dir, False, start)
    data = prepare_data(config, session, train, val)
    run = session.run
    features = None
    run_model = setup_model(config, strategy, session, data)
    if run_model.built.weights is not None:
        pre = run_model.preprocessing
        features = {
            what: _features(run_model.model, config, source, pre, what)
            for what, source in (("train", data.train), ("val", data.val))
        }
        run.write_json("preprocessing.json", pre.to_dict())
    else:  # random features would differ at every build: nothing to evaluate the fitted model on later
        console.print(f"baseline: {config.backbone} has no pretrained weights, so only raw pixels are fitted")
    config.to_yaml(run.path / "config.yaml")
    run.write_json("classes.json", data.classes)
    skipped = [{"path": p, "reason": r} for p, r in data.check.bad_images]
    described = {"train": data.train.describe(), "val": data.val.describe()}
    run.write_json("data.json", {**described, "skipped_images": skipped, "warnings": data.check.warnings})
    baselines = fit_baselines(config, data.train, data.val, features, run.path)
    chosen = baselines.chosen
    outcome = BaselineOutcome(run.path, baselines, time.perf_counter() - start, _parameters(chosen.estimator))
    summary = {
        "best_val_acc": chosen.val_acc,
        "best_epoch": 0,
        "chosen_by": baselines.chosen_by,
        "best_val_score": chosen.val_score,
        "seconds": outcome.seconds,
        "trainable_params": outcome.parameters,
        "frozen_params": 0,
        "stopped_early": False,
        "device": "cpu",
        "baseline": chosen.name,
        "skipped_images": len(skipped),
    }
    run.write_json("summary.json", summary)
    console.print(f"best val acc {100 * chosen.val_acc:.2f}% ({chosen.name}); run saved to {run.path}")
    return outcome


def baseline_metrics(run_dir: str | Path, source: ImageSource) -> ClassificationMetrics:
    """A baseline run's chosen model, refitted from its saved inputs, scored on `source` (`evaluate_run` writes
    the files)."""
    from transferkit.models import build_model

    run_dir = Path(run_dir)
    features = None
    if needs_features(run_dir):
        config = TrainConfig.from_yaml(run_dir / "config.yaml")
        model = build_model(config.backbone, len(source.classes), weights_file=config.weights).model
        features = _features(model, config, source, preprocessing_of(run_dir), "test")
    metrics, _ = evaluate_baseline(run_dir, source, features)
    return metrics


def _features(model, config: TrainConfig, source: ImageSource, pre: Preprocessing, what: str) -> np.ndarray:
    return np.array(run_features(model, config, source, pre, what))


def _parameters(estimator) -> int:
    model = estimator[-1]
    if hasattr(model, "support_vectors_"):
        return int(model.support_vectors_.size + model.dual_coef_.size + model.intercept_.size)
    return int(model.coef_.size + model.intercept_.size)
