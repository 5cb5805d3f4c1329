"""The baseline run: fit every classical model on both kinds of input, keep the one validation prefers.

A baseline run folder is an ordinary run folder (config.yaml, classes.json, data.json, summary.json) plus

    baseline.json   every model fitted (inputs, model, C chosen by cross-validation, CV and validation
                    accuracy, the figure it was chosen by, seconds), which one was chosen, and how pixels were
                    prepared
    baseline.npz    the chosen model's training inputs and labels (numeric arrays, read without pickle)

The chosen model is refitted from baseline.npz when the run is evaluated: the fit is deterministic and takes
seconds, and the folder holds no pickled estimator that would have to be trusted to be read back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from transferkit._console import console
from transferkit.baselines.classical import CLASSICAL_MODELS, ClassicalFit, fit_classical, make_estimator
from transferkit.baselines.inputs import PixelSpec, pixel_inputs
from transferkit.config import TrainConfig
from transferkit.data import ImageSource, Preprocessing
from transferkit.evaluate.metrics import ClassificationMetrics, classification_metrics, figure_for, prediction_figure

__all__ = ["BASELINE_FILE", "BaselineRun", "evaluate_baseline", "fit_baselines", "is_baseline_run"]

BASELINE_FILE = "baseline.json"
_INPUTS_FILE = "baseline.npz"


class BaselineRun:
    """The classical models of one run, fitted; `chosen` is the one with the best validation figure (`chosen_by`:
    accuracy, or the `select_by` figure predictions give, such as macro-F1 on imbalanced classes)."""

    def __init__(self, fits: list[ClassicalFit], pixels: PixelSpec, chosen_by: str = "accuracy") -> None:
        self.fits, self.pixels, self.chosen_by = fits, pixels, chosen_by
        # Ties (small validation sets) go to the better cross-validation score, then to the cheaper model.
        self.chosen = max(fits, key=lambda f: (_score(f), np.nan_to_num(f.cv_acc, nan=0.0), -f.seconds))

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen.name,
            "chosen_by": self.chosen_by,
            "pixels": self.pixels.to_dict(),
            "fits": [f.to_dict() for f in self.fits],
        }


def fit_baselines(
    config: TrainConfig,
    train: ImageSource,
    val: ImageSource,
    features: dict[str, np.ndarray] | None,
    run_dir: Path,
) -> BaselineRun:
    """Fit each model of `CLASSICAL_MODELS` on pixels and (when given) on `features` ({'train', 'val'} arrays).

    Writes baseline.json and baseline.npz into `run_dir`.
    """
    spec, chosen_by = PixelSpec.for_source(train), figure_for(config.select_by)
    began = time.perf_counter()
    inputs = {"pixels": {"train": pixel_inputs(train, spec), "val": pixel_inputs(val, spec)}}
    console.print(f"baseline: raw pixels as {spec.describe} vectors ({time.perf_counter() - began:.1f} s)")
    if features is not None:
        inputs["features"] = features
    fits = []
    for kind, x in inputs.items():
        for model in CLASSICAL_MODELS:
            fit = fit_classical(kind, model, x["train"], train.labels, seed=config.seed)
            scored = classification_metrics(np.asarray(val.labels), fit.estimator.predict(x["val"]), val.classes)
            fit.val_acc, fit.val_score = scored.accuracy, prediction_figure(scored, chosen_by)
            figure = "" if chosen_by == "accuracy" else f", val {chosen_by} {_pct(fit.val_score)}"
            console.print(
                f"baseline {fit.name}: C={fit.C:g} (cross-validated, {fit.folds} folds: {_pct(fit.cv_acc)}), "
                f"val acc {_pct(fit.val_acc)}{figure}, {fit.seconds:.1f} s"
            )
            fits.append(fit)
    run = BaselineRun(fits, spec, chosen_by)
    chosen = run.chosen
    np.savez(run_dir / _INPUTS_FILE, x=inputs[chosen.inputs]["train"], y=np.asarray(train.labels, np.int64))
    (run_dir / BASELINE_FILE).write_text(json.dumps(run.to_dict(), indent=2))
    console.print(f"baseline: chose {chosen.name} by validation {chosen_by} ({_pct(_score(chosen))})")
    return run


def _score(fit: ClassicalFit) -> float:
    return fit.val_score if fit.val_score is not None else fit.val_acc


def is_baseline_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / BASELINE_FILE).is_file()


def evaluate_baseline(
    run_dir: str | Path, source: ImageSource, features: np.ndarray | None = None
) -> tuple[ClassificationMetrics, np.ndarray]:
    """The chosen classical model of a baseline run, refitted from its saved inputs, scored on `source`.

    Args:
        features: `source`'s frozen-backbone features, needed when the chosen model takes features
            (`needs_features` says so).

    Returns:
        The metrics and the predicted class of every image.
    """
    run_dir = Path(run_dir)
    record = json.loads((run_dir / BASELINE_FILE).read_text())
    classes = json.loads((run_dir / "classes.json").read_text())
    if list(source.classes) != list(classes):
        raise ValueError(f"{source.name}: classes {source.classes} differ from the run's classes {classes}")
    chosen = next(f for f in record["fits"] if f["name"] == record["chosen"])
    from threadpoolctl import threadpool_limits

    with np.load(run_dir / _INPUTS_FILE, allow_pickle=False) as saved, threadpool_limits(limits=1):
        estimator = make_estimator(chosen["model"], chosen["C"]).fit(saved["x"], saved["y"])  # as it was fitted
    if chosen["inputs"] == "pixels":
        x = pixel_inputs(source, PixelSpec(**record["pixels"]))
    elif features is None:
        raise ValueError(f"{run_dir}: the chosen baseline {chosen['name']} takes the backbone's features; pass them")
    else:
        x = features
    with threadpool_limits(limits=1):
        predicted = estimator.predict(x)
    return classification_metrics(np.asarray(source.labels), predicted, list(classes)), predicted


def needs_features(run_dir: str | Path) -> bool:
    """The chosen model of this baseline run takes frozen-backbone features (not pixels)."""
    record = json.loads((Path(run_dir) / BASELINE_FILE).read_text())
    return record["chosen"].startswith("features")


def preprocessing_of(run_dir: str | Path) -> Preprocessing:
    return Preprocessing.from_dict(json.loads((Path(run_dir) / "preprocessing.json").read_text()))


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.2f}%"
