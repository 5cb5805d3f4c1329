"""The classical baseline: cross-validated C, pixel inputs, a run folder evaluate can score, a gain in compare."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from transferkit import TrainConfig, evaluate_run, from_folder, predict_images, train_run
from transferkit.baselines import CLASSICAL_MODELS, PixelSpec, fit_classical, pixel_inputs
from transferkit.compare import run_compare
from transferkit.data import ImageSource
from transferkit.train.checkpoint import CheckpointError

torch.set_num_threads(1)


def blobs(per_class: int, seed: int, classes: int = 3, size: int = 12, colour: bool = False) -> ImageSource:
    """Each class a bright square in its own corner, on noise: easy for pixels, so a baseline must get it."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(classes):
        for _ in range(per_class):
            img = rng.integers(0, 60, (size, size, 3) if colour else (size, size)).astype(np.uint8)
            y, x = divmod(label, 2)
            img[y * size // 2 : (y + 1) * size // 2, x * size // 2 : (x + 1) * size // 2] = 220
            images.append(img)
            labels.append(label)
    return ImageSource(
        [f"c{i}" for i in range(classes)], np.array(labels), arrays=np.stack(images), name=f"blobs-{seed}"
    )


def test_pixel_spec_keeps_small_images_native_and_grey_images_grey():
    grey, colour = blobs(4, 0), blobs(4, 0, colour=True)
    assert PixelSpec.for_source(grey) == PixelSpec(12, True)
    assert PixelSpec.for_source(colour) == PixelSpec(12, False)
    x = pixel_inputs(grey, PixelSpec(6, True))
    assert x.shape == (12, 36) and x.min() >= 0.0 and x.max() <= 1.0
    # A box filter averages: the bright quarter (220 over 6 x 6 pixels) stays exactly 220 at half the side.
    assert x[0].reshape(6, 6)[0, 0] == pytest.approx(220 / 255)


def test_c_is_chosen_by_cross_validation_on_the_training_data():
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from transferkit.baselines.classical import make_estimator

    source = blobs(9, 1)
    x, y = pixel_inputs(source, PixelSpec.for_source(source)), source.labels
    fit = fit_classical("pixels", "svm", x, y, seed=0)
    search = GridSearchCV(
        make_estimator("svm", 1.0), {"svc__C": list(CLASSICAL_MODELS["svm"])},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(x, y)  # fmt: skip
    assert search.best_params_["svc__C"] == fit.C and fit.cv_acc == pytest.approx(search.best_score_)
    assert fit.folds == 3 and (fit.estimator.predict(x) == y).mean() > 0.9
    # One image in a class: nothing to cross-validate, the middle of the grid is used and said to be so.
    single = fit_classical("pixels", "logreg", x[[0, 9, 18]], y[[0, 9, 18]])
    assert CLASSICAL_MODELS["logreg"][1] == single.C and single.folds == 1 and np.isnan(single.cv_acc)


def test_the_models_are_chosen_by_the_select_by_figure_predictions_give(tmp_path):
    from sklearn.metrics import f1_score

    from transferkit.baselines.run import fit_baselines

    train, val = blobs(8, 2, classes=4), blobs(3, 3, classes=4)
    config = TrainConfig(backbone="tiny_resnet", strategy="baseline", select_by="macro-f1")
    run = fit_baselines(config, train, val, None, tmp_path)
    x = pixel_inputs(val, run.pixels)
    for fit in run.fits:
        predicted = fit.estimator.predict(x)
        assert fit.val_score == pytest.approx(f1_score(val.labels, predicted, average="macro"))
        assert fit.val_acc == pytest.approx((predicted == val.labels).mean())
    assert run.chosen.val_score == max(f.val_score for f in run.fits)
    assert json.loads((tmp_path / "baseline.json").read_text())["chosen_by"] == "macro-f1"
    # A loss needs probabilities an SVM does not give: the models are chosen by accuracy then.
    lossy = fit_baselines(TrainConfig(backbone="tiny_resnet", select_by="loss"), train, val, None, tmp_path)
    assert lossy.chosen_by == "accuracy" and all(f.val_score == f.val_acc for f in lossy.fits)


def test_a_baseline_run_is_a_run_folder_that_evaluate_scores_and_predict_refuses(tmp_path, image_folder):
    config = TrainConfig(backbone="tiny_resnet", strategy="baseline", image_size=32, seed=0)
    result = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    record = json.loads((tmp_path / "run" / "baseline.json").read_text())
    # tiny_resnet has no pretrained weights: its random features would change at every build, so only pixels.
    assert [f["name"] for f in record["fits"]] == ["pixels-logreg", "pixels-svm"]
    chosen = next(f for f in record["fits"] if f["name"] == record["chosen"])
    assert result.best_val_acc == chosen["val_acc"] == max(f["val_acc"] for f in record["fits"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["baseline"] == record["chosen"] and summary["trainable_params"] == result.trainable_params > 0

    metrics, out = evaluate_run(tmp_path / "run", from_folder(image_folder))
    assert metrics.accuracy > 0.9 and (out / "confusion.png").is_file()
    with pytest.raises(CheckpointError, match="baseline run.*not a network"):
        predict_images(tmp_path / "run", [next(image_folder.rglob("*.png"))])


def test_compare_runs_the_baseline_by_default_and_states_the_transfer_gain(tmp_path):
    config = TrainConfig(backbone="tiny_resnet", epochs=2, image_size=24, batch_size=8, lr=1e-3, seed=0)
    result = run_compare(
        blobs(10, 0), test=blobs(6, 1), config=config, strategies=["baseline", "full"], out=tmp_path, report=True
    )
    baseline = result.summary("baseline")
    assert baseline.classical and baseline.model in ("pixels-logreg", "pixels-svm")
    assert result.best_strategy == "full"  # a baseline is never "the best strategy", whatever it scored
    gain = result.transfer_gain()
    assert gain["split"] == "test" and gain["baseline_acc"] == baseline.test_acc_mean
    assert gain["points"] == pytest.approx(100 * (result.summary("full").test_acc_mean - baseline.test_acc_mean))
    assert ("Transfer gain" if gain["points"] > 0 else "No transfer gain") in result.transfer_gain_text()
    html = (result.compare_dir / "report.html").read_text()
    assert "baseline (pixels-" in html and "transfer gain" in html.lower()
    assert "baseline" not in json.loads((result.compare_dir / "compare.json").read_text())["targets"]


def test_the_cli_trains_a_baseline_and_scores_the_test_set(tmp_path, image_folder, val_folder):
    cmd = [sys.executable, "-m", "transferkit", "train", str(image_folder), "--val", str(val_folder), "--test",
           str(val_folder), "--strategy", "baseline", "--backbone", "tiny_resnet", "--image-size", "32",
           "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stderr and "baseline: chose pixels-" in done.stderr
