"""`transferkit advise`, `train --strategy auto` and `compare --strategies auto` on tiny backbones."""

from __future__ import annotations

import json

import pytest

from transferkit.cli import main

TINY = ["--image-size", "32"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_advise_prints_measurements_regime_and_reasons(capsys, image_folder):
    code, out, err = _run(capsys, "advise", image_folder, "--backbone", "tiny_resnet", *TINY)
    assert code == 0, out + err
    assert "linear probe accuracy" in out and "LogME after stage layer1" in out
    assert "regime: no-pretrained-weights" in out and "strategy scratch" in out
    assert "the smallest class has 12 images" in out  # the generated folder: 3 classes x 12


def test_advise_json_carries_plan_and_measurements(capsys, image_folder):
    code, out, _ = _run(capsys, "advise", image_folder, "--backbone", "tiny_effnet", *TINY, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["strategy"] == "scratch" and data["image_size"] == 32
    m = data["measurements"]
    assert (m["n_classes"], m["min_per_class"], m["sample_images"]) == (3, 12, 36)
    assert len(m["stage_logme"]) == len(m["stage_names"]) > 1
    assert 0.0 <= m["probe_acc"] <= 1.0


def test_advise_ranks_the_backbones_it_is_given(capsys, image_folder):
    code, out, _ = _run(capsys, "advise", image_folder, "--backbones", "tiny_resnet,tiny_effnet", *TINY, "--json")
    assert code == 0
    ranking = json.loads(out)["ranking"]
    assert sorted(r["backbone"] for r in ranking) == ["tiny_effnet", "tiny_resnet"]
    assert [r["rank"] for r in ranking] == [1, 2]
    assert ranking[0]["logme"] >= ranking[1]["logme"] and all(r["seconds"] > 0 for r in ranking)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backbone", "no_such_net"], "unknown backbone"),
        (["--sample-images", "1"], "--sample-images"),
    ],
)
def test_bad_input_is_a_clear_error(capsys, image_folder, args, message):
    code, out, err = _run(capsys, "advise", image_folder, *args)
    assert code == 2
    assert message in err and "Traceback" not in out + err


def test_train_strategy_auto_no_race_trains_the_advised_plan_and_saves_it(tmp_path, capsys, image_folder):
    args = ["--backbone", "tiny_resnet", "--epochs", "2", "--batch-size", "8", "--no-race", *TINY]
    code, out, err = _run(capsys, "train", image_folder, "--strategy", "auto", *args, "--out", tmp_path, "--name", "a")
    assert code == 0, out + err
    run = tmp_path / "a-001"
    advice = json.loads((run / "advice.json").read_text())
    assert advice["strategy"] == "scratch" and advice["measurements"]["backbone"] == "tiny_resnet"
    config = (run / "config.yaml").read_text()
    assert "strategy: scratch" in config
    assert "epochs: 2" in config  # set by the user, so kept
    assert f"lr: {advice['lr']}" in config  # left at its default, so advised
    assert (run / "best.safetensors").is_file()
