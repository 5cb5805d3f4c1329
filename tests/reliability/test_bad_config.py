"""Bad configuration values are clear errors naming the field (and the file), never a traceback or a silent
reinterpretation (`epochs: true` as 1 epoch, `--per-class 0` as no limit)."""

from __future__ import annotations

import pytest

from transferkit.cli import main
from transferkit.config import ConfigError, TrainConfig
from transferkit.evaluate import predict_images

TRAIN = ["train", "--backbone", "tiny_resnet", "--strategy", "full", "--epochs", "1", "--image-size", "32"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: ten\n", "epochs: expected a whole number, got 'ten'"),
        ("epochs: 1.7\n", "epochs: expected a whole number, got 1.7"),
        ("epochs: true\n", "epochs: expected a whole number, got True"),
        ("lr: [1, 2]\n", "lr: expected a number, got [1, 2]"),
        ("augment: maybe\n", "augment: expected true or false, got 'maybe'"),
        ("epochs: 3\n  lr: 1\n", "not valid YAML at line 2, column 5: mapping values are not allowed here"),
        ("epochs: [3\n", "not valid YAML at line 2"),
        ("- epochs\n", "expected a mapping of config keys"),
        ("epoch: 3\n", "unknown config keys: epoch"),
        ("device: tpu\n", "device 'tpu': choose auto, cpu, cuda, cuda:N or mps"),
        ("workers: -2\n", "workers must be 0 or more"),
    ],
)
def test_bad_yaml_values_name_the_field_and_the_file(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_yaml(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_values_that_mean_the_type_are_converted(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("lr: 1e-4\nepochs: '3'\ntime_budget: 900\nstrategy: full\n")  # YAML reads 1e-4 as a string
    config = TrainConfig.from_yaml(path)
    assert (config.lr, config.epochs, config.time_budget) == (1e-4, 3, "900")
    with pytest.raises(ConfigError, match="warmup_epochs must be in"):
        TrainConfig(strategy="full", epochs=2, warmup_epochs=5)


def test_the_cli_reports_bad_config_in_one_line(image_folder, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: true\n")
    cases = {
        "config file": ([*TRAIN, str(image_folder), "--config", str(config)], "epochs: expected a whole number"),
        "device": ([*TRAIN, str(image_folder), "--device", "tpu"], "device 'tpu': choose auto, cpu"),
        "workers": ([*TRAIN, str(image_folder), "--workers", "-2"], "workers must be 0 or more"),
    }
    for name, (argv, message) in cases.items():
        assert main([*argv, "--out", str(tmp_path / "runs")]) == 2, name
        out, err = capsys.readouterr()
        assert message in err.replace("\n", "") and "Traceback" not in out + err, name
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "RUN", "x.png", "--top-k", "0"],
        ["predict", "RUN", "x.png", "--top-k", "-1"],
        [*TRAIN, "DATA", "--per-class", "0"],
        ["export", "RUN", "--format", "onnx", "--check-images", "0"],
    ],
)
def test_counts_below_one_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_predict_refuses_top_k_below_one(full_run):
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        predict_images(full_run.run_dir, [], top_k=0)
