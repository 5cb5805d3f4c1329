"""The learning-rate range test: the curve, the suggestion on it, the PNG, and a model left as it was."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from transferkit import TrainConfig, from_folder, train_run
from transferkit.cli import main
from transferkit.config import ConfigError
from transferkit.report import build_report
from transferkit.strategies import get_strategy
from transferkit.train import setup as train_setup
from transferkit.train.lr_find import LrFindError, find_lr, gradient_phase, suggest_lr


def _config(strategy="full", **kwargs):
    base = dict(backbone="tiny_resnet", strategy=strategy, epochs=2, batch_size=8, image_size=32, lr_find_steps=40)
    return TrainConfig(**{**base, **kwargs})


def _curve(n=60):
    """A textbook range test: flat, a long fall, a minimum, divergence."""
    lrs = [1e-6 * 10 ** (6 * i / (n - 1)) for i in range(n)]
    losses = [2.0 + 0.01 * math.sin(i) if i < 15 else max(0.3, 2.0 - 0.06 * (i - 15)) for i in range(n)]
    losses = [v + (0.2 * (i - 48) ** 2 if i > 48 else 0) for i, v in enumerate(losses)]
    return lrs, losses


@pytest.mark.parametrize("rule", ["valley", "steepest", "minimum"])
def test_suggestions_fall_on_the_descent(rule):
    lrs, losses = _curve()
    index = suggest_lr(lrs, losses, rule)
    lowest = min(range(len(losses)), key=losses.__getitem__)
    assert 14 <= index < lowest, (rule, index)  # after the flat start, before the minimum


def test_unknown_rule_and_short_curves_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        suggest_lr([1e-3, 1e-2, 1e-1], [1, 0.5, 2], "fastest")
    with pytest.raises(ValueError, match="at least 3"):
        suggest_lr([1e-3, 1e-2], [1.0, 0.5])


def test_range_test_on_a_tiny_model(image_folder):
    found = find_lr(_config(), from_folder(image_folder))
    assert found.suggestion in found.lrs  # a measured point, not an extrapolation
    assert found.losses[found.index] == pytest.approx(found.losses[found.lrs.index(found.suggestion)])
    ratios = [b / a for a, b in zip(found.lrs, found.lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))  # exponential steps
    assert 3 <= len(found.lrs) <= 40 and len(found.smoothed) == len(found.losses) == len(found.lrs)
    assert found.group_multipliers["head"] == pytest.approx(10.0)  # the strategy's groups: head x10
    assert found.group_multipliers["backbone"] == pytest.approx(1.0)


def test_groups_follow_the_strategy():
    scratch = gradient_phase(get_strategy("scratch"), _config("scratch"))
    assert (scratch.lr, scratch.head_lr_mult) == (10.0, 1.0)  # every layer at scratch_lr_mult x --lr
    lp_ft = gradient_phase(get_strategy("lp-ft"), _config("lp-ft", epochs=3))
    assert lp_ft.name == "finetune"  # the probe is solved by L-BFGS: the rate is the fine-tune phase's
    with pytest.raises(LrFindError, match="no learning rate"):
        gradient_phase(get_strategy("linear-probe"), _config("linear-probe"))
    assert gradient_phase(get_strategy("linear-probe"), _config("linear-probe", head_solver="minibatch")).probe


def test_the_minibatch_probe_sweeps_its_head_on_cached_features(image_folder):
    found = find_lr(_config("linear-probe", head_solver="minibatch"), from_folder(image_folder))
    assert found.phase == "probe" and set(found.group_multipliers) == {"head", "head-no-decay"}
    assert found.group_multipliers["head"] == pytest.approx(10.0)  # the probe's head at x head_lr_mult
    assert found.suggestion in found.lrs


def test_lr_auto_trains_exactly_as_the_suggested_rate(tmp_path, image_folder, monkeypatch):
    """The test leaves weights, BatchNorm statistics and RNGs as they were: --lr auto is --lr <suggestion>."""
    real = train_setup.build_model

    def with_dropout(*args, **kwargs):  # the head's dropout draws from the global RNG, as in EfficientNet-Lite0
        built = real(*args, **kwargs)
        built.model.drop_rate = 0.3
        return built

    monkeypatch.setattr(train_setup, "build_model", with_dropout)
    source = from_folder(image_folder)
    auto = train_run(_config(lr="auto"), source, run_dir=tmp_path / "auto")
    found = json.loads((auto.run_dir / "lr_find.json").read_text())
    saved = TrainConfig.from_yaml(auto.run_dir / "config.yaml")
    assert saved.lr == found["suggestion"]  # the run folder repeats exactly
    fixed = train_run(_config(lr=found["suggestion"]), source, run_dir=tmp_path / "fixed")
    a, b = load_file(auto.run_dir / "last.safetensors"), load_file(fixed.run_dir / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lr_auto_with_the_lbfgs_probe_keeps_the_default(tmp_path, image_folder, capsys):
    result = train_run(_config("linear-probe", lr="auto"), from_folder(image_folder), run_dir=tmp_path / "run")
    assert TrainConfig.from_yaml(result.run_dir / "config.yaml").lr is None
    assert "training with the default rate" in capsys.readouterr().err


def test_lr_find_command_writes_the_png(tmp_path, image_folder, capsys):
    args = ["lr-find", str(image_folder), "--backbone", "tiny_resnet", "--strategy", "full", "--image-size", "32"]
    args += ["--batch-size", "8", "--lr-find-steps", "30", "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    with Image.open(out["png"]) as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert out["suggestion"] in out["lrs"] and out["rule"] == "minimum"
    assert main([*args[:-1], "--strategy", "linear-probe"]) == 2  # no rate to find: a clear error
    assert "L-BFGS" in capsys.readouterr().err


def test_lr_auto_is_the_only_word_lr_takes():
    assert TrainConfig(lr="auto").lr == "auto"
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr="fast")
    with pytest.raises(ConfigError, match="range test"):
        TrainConfig(lr="auto", strategy="full").resolved_lr()


def test_the_report_shows_the_range_test(tmp_path, image_folder):
    from transferkit import Finetuner

    tuner = Finetuner(from_folder(image_folder), config=_config(lr="auto", epochs=1))
    tuner.fit(out=tmp_path)
    assert (tuner.run_dir / "lr_find.png").is_file()
    html = build_report(tuner.run_dir).read_text()
    assert "Learning-rate range test" in html and "trained at the suggested" in html
