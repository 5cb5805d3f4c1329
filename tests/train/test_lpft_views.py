"""lp-ft's probe on augmented views: deterministic features, the caller's RNG untouched, a head fitted on them."""

from __future__ import annotations

import json

import numpy as np
import torch

from transferkit import TrainConfig, from_folder, train_run
from transferkit.models import build_model, get_backbone, preprocessing_config
from transferkit.strategies import lp_ft
from transferkit.train.features import augmented_features, extract_source_features


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


def test_lp_ft_with_augmented_views_trains_the_same_twice(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(lp_ft, "AUGMENTED_VIEWS", 2)
    config = TrainConfig(backbone="tiny_resnet", strategy="lp-ft", epochs=3, image_size=32, batch_size=16, seed=0)
    runs = [train_run(config, from_folder(image_folder), run_dir=tmp_path / f"run{i}") for i in range(2)]
    from safetensors.torch import load_file

    a, b = (load_file(r.run_dir / "last.safetensors") for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (runs[0].run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["probe", "finetune", "finetune"]
