"""``strategy: auto`` without a race through the library: the advised plan is what trains (test_race.py: with one)."""

from __future__ import annotations

import json

import pytest

from transferkit import TrainConfig, from_folder, train_run
from transferkit.advise import Measurements
from transferkit.advise.auto import resolve_auto


@pytest.fixture
def peaked_advice(monkeypatch):
    """Measurements of a pretrained backbone whose LogME peaks at stage 1 of 5: small and different."""

    def fake_measure(source, backbone, **kwargs):
        return Measurements(
            backbone,
            True,
            n_images=len(source),
            n_classes=len(source.classes),
            min_per_class=12,
            median_per_class=12,
            imbalance=1.0,
            image_size=32,
            logme=-0.4,
            probe_acc=0.9,
            probe_gain=0.85,
            stage_names=["conv1,bn1", "layer1", "layer2", "layer3", "layer4"],
            stage_logme=[0.1, 0.3, 0.0, -0.2, -0.4],
        )

    monkeypatch.setattr("transferkit.advise.measure", fake_measure)


def test_train_run_with_auto_freezes_what_the_advice_says(tmp_path, image_folder, val_folder, peaked_advice):
    config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=1, batch_size=8, device="cpu", race=False)
    with pytest.raises(ValueError, match="resolve_auto"):  # the advice is taken before the runner is called
        train_run(config, from_folder(image_folder), run_dir=tmp_path / "unresolved")
    train = from_folder(image_folder)
    resolved = resolve_auto(config, train, tmp_path / "run")
    result = train_run(resolved, train, from_folder(val_folder), run_dir=tmp_path / "run")
    advice = json.loads((tmp_path / "run" / "advice.json").read_text())
    assert (advice["regime"], advice["strategy"], advice["freeze"]) == ("small-different", "partial", 2)
    assert "strategy: partial" in (tmp_path / "run" / "config.yaml").read_text()
    assert "freeze: 2" in (tmp_path / "run" / "config.yaml").read_text()
    assert result.frozen_params > 0 and result.trainable_params > 0


def test_compare_runs_auto_beside_fixed_strategies(tmp_path, image_folder, val_folder, peaked_advice):
    from transferkit.compare import run_compare

    config = TrainConfig(backbone="tiny_resnet", epochs=1, batch_size=8, image_size=32, device="cpu", race=False)
    result = run_compare(
        from_folder(image_folder),
        val=from_folder(val_folder),
        config=config,
        strategies="auto,linear-probe",
        out=tmp_path,
        report=False,
    )
    assert [s.strategy for s in result.summaries] == ["auto", "linear-probe"]
    assert all(s.status == "ok" for s in result.summaries)
    assert json.loads((result.compare_dir / "auto" / "advice.json").read_text())["strategy"] == "partial"


def test_auto_says_the_epochs_that_run_when_the_user_set_them(tmp_path, image_folder, peaked_advice, capsys):
    config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=2, batch_size=8, device="cpu", race=False)
    resolved = resolve_auto(config, from_folder(image_folder), tmp_path / "run")
    advised = json.loads((tmp_path / "run" / "advice.json").read_text())["epochs"]
    assert advised != 2 and resolved.epochs == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{advised} epochs" in err  # the advice as measured...
    assert (
        f"strategy auto: training partial --freeze 2 with epochs 2 (yours; advised {advised})" in err
    )  # ...and what runs
