"""A probe fitted on augmented views (`probe_views`): deterministic features, the caller's RNG untouched, a head
fitted on clean + augmented features when asked and on the clean features alone otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transferkit import TrainConfig, from_folder, train_run
from transferkit.models import build_model, get_backbone, preprocessing_config
from transferkit.train import _probe
from transferkit.train.features import augmented_features, extract_source_features


def _head(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = load_file(run_dir / "best.safetensors")
    return {k: v for k, v in weights.items() if k.startswith("fc.")}


def test_augmented_views_are_reproducible_and_leave_the_callers_rng_alone(image_folder):
    source = from_folder(image_folder)
    torch.manual_seed(0)
    model = build_model("tiny_resnet", len(source.classes), pretrained=False).model
    pre = preprocessing_config(model, get_backbone("tiny_resnet"), 32, crop_pct=1.0)
    before = torch.random.get_rng_state()
    first = augmented_features(model, source, pre, augmentation="resized-crop", views=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    again = augmented_features(model, source, pre, augmentation="resized-crop", views=2, seed=3)
    other = augmented_features(model, source, pre, augmentation="resized-crop", views=2, seed=4)
    clean = extract_source_features(model, source, pre)
    assert first.shape == (2 * len(source), clean.shape[1])
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # The two passes are different views, and neither is the clean image.
    n = len(source)
    assert not np.allclose(first[:n], first[n:]) and not np.allclose(first[:n], clean)


@pytest.fixture
def fitted_on(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (features, labels) every L-BFGS head of a run is fitted on, in order."""
    seen = []
    real = _probe.LbfgsHead

    def recording(features, labels, *args, **kwargs):
        seen.append((torch.as_tensor(features).clone(), torch.as_tensor(labels).clone()))
        return real(features, labels, *args, **kwargs)

    monkeypatch.setattr(_probe, "LbfgsHead", recording)
    return seen


@pytest.mark.parametrize("strategy", ["linear-probe", "lp-ft"])
def test_probe_views_fit_the_head_on_clean_and_augmented_features(image_folder, tmp_path, fitted_on, strategy):
    source = from_folder(image_folder)
    config = TrainConfig(
        backbone="tiny_resnet", strategy=strategy, epochs=3, image_size=32, batch_size=16, seed=0, probe_views=0
    )
    plain = train_run(config, source, run_dir=tmp_path / "plain")
    views = train_run(TrainConfig(**{**config.to_dict(), "probe_views": 2}), source, run_dir=tmp_path / "views")
    (clean_x, clean_y), (aug_x, aug_y) = fitted_on
    # views 0 fits on the training images' clean features alone (validation held out), as before the field existed;
    # views 2 on the same clean rows first, then two augmented passes with their labels repeated.
    n = len(clean_y)
    assert clean_x.shape[0] == n < len(source)
    assert aug_x.shape[0] == 3 * n and torch.equal(aug_x[:n], clean_x) and torch.equal(aug_y, clean_y.repeat(3))
    assert not torch.allclose(aug_x[n : 2 * n], clean_x) and not torch.allclose(aug_x[n : 2 * n], aug_x[2 * n :])
    a, b = _head(plain.run_dir), _head(views.run_dir)
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    # The logged training figures stay those of the clean features, so the two runs' probe rows compare.
    rows = [json.loads(line) for line in (views.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["phase"] == "probe"


def test_probe_views_need_augmentation(image_folder, tmp_path, fitted_on):
    source = from_folder(image_folder)
    config = TrainConfig(
        backbone="tiny_resnet", strategy="linear-probe", epochs=2, image_size=32, seed=0, probe_views=2, augment=False
    )
    train_run(config, source, run_dir=tmp_path / "run")
    ((x, y),) = fitted_on
    assert x.shape[0] == len(y) < len(source)  # the clean training features only


def test_lp_ft_with_augmented_views_trains_the_same_twice(image_folder, tmp_path):
    config = TrainConfig(
        backbone="tiny_resnet", strategy="lp-ft", epochs=3, image_size=32, batch_size=16, seed=0, probe_views=2
    )
    runs = [train_run(config, from_folder(image_folder), run_dir=tmp_path / f"run{i}") for i in range(2)]
    from safetensors.torch import load_file

    a, b = (load_file(r.run_dir / "last.safetensors") for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (runs[0].run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["probe", "finetune", "finetune"]


def test_probe_views_is_a_cli_option():
    import argparse

    from transferkit.cli._config_args import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--probe-views", "0", "--strategy", "lp-ft"]))
    assert config.probe_views == 0 and TrainConfig().probe_views == 2
