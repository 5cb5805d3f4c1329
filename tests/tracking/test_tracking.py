"""--log tensorboard and --log mlflow: the event files and the MLflow store hold the figures metrics.jsonl holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from transferkit import Finetuner, TrainConfig, from_folder
from transferkit.config import ConfigError
from transferkit.tracking import TrackingError, open_loggers, parse_log
from transferkit.train.rundir import RunDir


def _config(log: str, **kwargs) -> TrainConfig:
    base = dict(backbone="tiny_resnet", strategy="full", epochs=2, lr=1e-3, batch_size=8, image_size=32, log=log)
    return TrainConfig(**{**base, **kwargs})


def test_log_names_are_checked():
    assert parse_log("tensorboard, MLflow") == ["tensorboard", "mlflow"] and parse_log(None) == []
    with pytest.raises(ConfigError, match="wandb: choose from mlflow, tensorboard"):
        TrainConfig(log="wandb")


def test_a_missing_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    with pytest.raises(TrackingError, match=r"pip install mlflow \(or pip install 'transferkit\[tracking\]'\)"):
        open_loggers("mlflow", tmp_path, {})


def test_tensorboard_event_files_hold_the_logged_values(tmp_path, image_folder, val_folder):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tuner = Finetuner(from_folder(image_folder), test=from_folder(val_folder), config=_config("tensorboard"))
    tuner.fit(out=tmp_path)
    rows = RunDir(tuner.run_dir).metrics()
    events = EventAccumulator(str(tuner.run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    for key, tag in (("val_acc", "val/acc"), ("train_loss", "train/loss"), ("val_macro_f1", "val/macro_f1")):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [r["epoch"] for r in rows]
        assert [e.value for e in logged] == pytest.approx([r[key] for r in rows], rel=1e-6)
    lrs = {tag for tag in events.Tags()["scalars"] if tag.startswith("lr/")}
    assert {"lr/head", "lr/backbone"} <= lrs  # one curve per parameter group
    head, backbone = events.Scalars("lr/head")[0].value, events.Scalars("lr/backbone")[0].value
    assert head == pytest.approx(10 * backbone)
    assert {"curves", "confusion"} <= set(events.Tags()["images"])
    hparams = list((tuner.run_dir / "tensorboard" / "hparams").glob("events.out.tfevents.*"))
    assert hparams  # the config as hparams, with the final figures
    final = EventAccumulator(str(hparams[0].parent))
    final.Reload()
    assert final.Scalars("hparam/test_acc")[0].value == pytest.approx(tuner.test_metrics.accuracy, rel=1e-6)


def test_mlflow_store_holds_params_metrics_and_the_run_folder(tmp_path, image_folder, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # the default store: ./mlruns
    tuner = Finetuner(from_folder(image_folder), config=_config("mlflow", class_weights="balanced"))
    tuner.fit(out=tmp_path / "runs")
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("transferkit")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == tuner.run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["class_weights"] == "balanced" and run.data.params["epochs"] == "2"
    rows = RunDir(tuner.run_dir).metrics()
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["val_acc"])) for r in rows]
    assert run.data.metrics["best_val_acc"] == pytest.approx(tuner.result.best_val_acc)
    assert {"lr_head", "lr_backbone", "val_macro_f1"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.jsonl", "config.yaml", "best.safetensors", "curves.png"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "metrics.jsonl", str(tmp_path / "back"))
    assert local.startswith(str(tmp_path / "back"))
    assert [json.loads(line)["val_acc"] for line in Path(local).read_text().splitlines()] == [
        r["val_acc"] for r in rows
    ]


def test_mlflow_tracking_uri_is_honoured(tmp_path, image_folder, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "pets")
    monkeypatch.chdir(tmp_path)
    tuner = Finetuner(from_folder(image_folder), config=_config("mlflow", epochs=1))
    tuner.fit(out=tmp_path / "runs")
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("pets").experiment_id])
    assert run.data.metrics["val_acc"] == pytest.approx(RunDir(tuner.run_dir).metrics()[-1]["val_acc"])
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # not the default store


def test_without_log_nothing_is_written(tmp_path, image_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tuner = Finetuner(from_folder(image_folder), config=_config(None, epochs=1))
    tuner.fit(out=tmp_path / "runs")
    assert not (tuner.run_dir / "tensorboard").exists() and not (tmp_path / "mlruns").exists()
