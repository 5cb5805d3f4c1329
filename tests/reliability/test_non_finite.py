"""A diverged epoch is never kept as best, metrics stay valid JSON, and predict refuses a model that outputs NaN."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from transferkit.cli import main
from transferkit.models import build_model
from transferkit.train._tracker import Tracker
from transferkit.train.loop import EpochResult
from transferkit.train.rundir import RunDir


def _strict_json(text: str) -> object:
    """json.loads that rejects the bare NaN / Infinity Python writes by default (other readers do)."""

    def _refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=_refuse)


def _epoch(epoch: int, val_loss: float, val_acc: float, train_loss: float = 1.0) -> EpochResult:
    return EpochResult(epoch, "full", train_loss, 0.5, val_loss, val_acc, 1e-3, 0.1)


@pytest.fixture
def tracker(tmp_path):
    model = build_model("tiny_resnet", 3, pretrained=False).model
    meta = {"backbone": "tiny_resnet", "classes": ["a", "b", "c"]}
    return Tracker(RunDir(tmp_path / "run"), model, meta, patience=None, data={})


def test_a_nan_epoch_is_not_kept_as_best(tracker, capsys):
    tracker(_epoch(1, math.nan, 0.0))  # what lr 1e6 gave: val loss NaN, accuracy 0%
    assert tracker.best_epoch == 0
    assert not (tracker.run.path / "best.safetensors").exists()
    assert "not finite, so this epoch is not kept as best" in capsys.readouterr().err
    tracker(_epoch(2, math.inf, 0.9))  # an infinite loss is no better, however high the accuracy
    assert tracker.best_epoch == 0
    tracker(_epoch(3, 0.7, 0.6, train_loss=math.inf))
    assert tracker.best_epoch == 3 and (tracker.run.path / "best.safetensors").exists()


def test_metrics_and_sidecars_are_valid_json_and_read_back(tracker):
    tracker(_epoch(1, math.nan, 0.0))
    tracker(_epoch(2, 0.7, 0.6, train_loss=math.inf))
    lines = (tracker.run.path / "metrics.jsonl").read_text().splitlines()
    rows = [_strict_json(line) for line in lines]
    assert rows[0]["val_loss"] is None and rows[1]["train_loss"] is None and rows[1]["val_loss"] == 0.7
    back = tracker.run.metrics()
    assert math.isnan(back[0]["val_loss"]) and math.isnan(back[1]["train_loss"]) and back[1]["val_acc"] == 0.6
    best = _strict_json((tracker.run.path / "best.json").read_text())
    assert best["metrics"]["train_loss"] is None and best["epoch"] == 2


def test_predict_refuses_a_model_whose_outputs_are_not_finite(full_run, image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run.run_dir, run)
    weights = load_file(str(run / "best.safetensors"))
    # Finite weights (so the checkpoint loads) that overflow float32 a few layers in, as a diverged run's do.
    blown = {k: v * 1e20 if k.endswith("weight") and v.is_floating_point() else v for k, v in weights.items()}
    assert all(torch.isfinite(v).all() for v in blown.values() if v.is_floating_point())
    save_file(blown, str(run / "best.safetensors"))
    image = next((image_folder / "red").glob("*.png"))
    assert main(["predict", str(run), str(image)]) == 2
    out, err = capsys.readouterr()
    assert "is not finite (NaN or infinite)" in err.replace("\n", "") and "nan%" not in out + err
