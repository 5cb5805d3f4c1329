"""The on-disk feature cache: keys, invalidation when files change, hits that skip extraction, and the runner."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from transferkit import TrainConfig, from_folder, train_run
from transferkit.data import ImageDataset, build_transforms
from transferkit.data.feature_cache import FeatureCache
from transferkit.models import build_model, preprocessing_config
from transferkit.train import features as features_module
from transferkit.train.features import cached_features, extract_features, extractor_key


@pytest.fixture
def folder(tmp_path, image_folder):
    """A private copy of the generated image folder, free to modify."""
    return shutil.copytree(image_folder, tmp_path / "shapes")


@pytest.fixture
def model_and_pre():
    torch.manual_seed(0)
    built = build_model("tiny_resnet", 3, pretrained=False)
    model = built.model.eval()
    return model, preprocessing_config(model, built.spec, 32)


@pytest.fixture
def extractions(monkeypatch):
    """Counts the images the cache sends to extraction (the real extraction still runs)."""
    calls = []
    real = features_module.extract_source_features

    def spy(model, source, *args, **kwargs):
        calls.append(len(source))
        return real(model, source, *args, **kwargs)

    monkeypatch.setattr(features_module, "extract_source_features", spy)
    return calls


def _features(model, pre, source, root, what="train"):
    return np.array(cached_features(model, "tiny_resnet", source, pre, cache_dir=root, what=what))


def test_fast_extraction_equals_the_evaluation_transform(model_and_pre, folder):
    model, pre = model_and_pre
    source = from_folder(folder)
    loader = DataLoader(ImageDataset(source, build_transforms(pre, train=False)), batch_size=7)
    reference, labels = extract_features(model, loader, torch.device("cpu"))
    fast = features_module.extract_source_features(model, source, pre, batch_size=5)
    assert fast.shape == tuple(reference.shape)
    np.testing.assert_allclose(fast, reference.numpy(), rtol=1e-4, atol=1e-5)
    assert labels.tolist() == source.labels.tolist()


def test_same_sources_hit_and_skip_extraction(model_and_pre, folder, tmp_path, extractions):
    model, pre = model_and_pre
    first = _features(model, pre, from_folder(folder), tmp_path / "cache")
    assert extractions == [36]
    cache = FeatureCache(tmp_path / "cache")
    second = cache.features(
        from_folder(folder),
        extractor_key(model, "tiny_resnet", pre),
        lambda src, out: pytest.fail("extraction ran on a cache hit"),
    )
    assert [event for event, _ in cache.events] == ["hit"]
    np.testing.assert_array_equal(second, first)
    assert extractions == [36]


def test_a_touched_or_replaced_file_rebuilds_the_entry(model_and_pre, folder, tmp_path, extractions):
    model, pre = model_and_pre
    before = _features(model, pre, from_folder(folder), tmp_path / "cache")
    target = folder / "red" / "red_00.png"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same pixels, newer time
    cache = FeatureCache(tmp_path / "cache")
    key = extractor_key(model, "tiny_resnet", pre)
    touched = np.array(
        cache.features(from_folder(folder), key, lambda s, o: features_module.extract_source_features(model, s, pre, o))
    )
    assert [event for event, _ in cache.events] == ["rebuilt"]
    np.testing.assert_allclose(touched, before, rtol=1e-5, atol=1e-6)

    Image.new("RGB", (40, 40), (255, 255, 0)).save(target)  # new content in the same file
    index = from_folder(folder).paths.index(target)
    after = _features(model, pre, from_folder(folder), tmp_path / "cache")
    assert extractions == [36, 36, 36]  # first, touched, replaced
    assert not np.allclose(after[index], before[index])
    others = [i for i in range(len(after)) if i != index]
    np.testing.assert_allclose(after[others], before[others], rtol=1e-5, atol=1e-6)
    # Entries are replaced in place, never piled up: one entry (array + record) for this source and model.
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 1


def test_other_weights_or_preprocessing_are_other_entries(model_and_pre, folder, tmp_path, extractions):
    model, pre = model_and_pre
    source = from_folder(folder)
    _features(model, pre, source, tmp_path / "cache")
    _features(model, pre.with_size(40), source, tmp_path / "cache")
    _features(model, dataclasses.replace(pre, mean=(0.0, 0.0, 0.0)), source, tmp_path / "cache")
    with torch.no_grad():
        next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean.add_(0.5)
    _features(model, pre, source, tmp_path / "cache")
    assert extractions == [36] * 4
    with torch.no_grad():
        model.get_classifier().weight.mul_(2)  # the head is not part of the features
    _features(model, pre, source, tmp_path / "cache")
    assert extractions == [36] * 4


def test_a_damaged_entry_is_rebuilt(model_and_pre, folder, tmp_path, extractions):
    model, pre = model_and_pre
    _features(model, pre, from_folder(folder), tmp_path / "cache")
    (array,) = (tmp_path / "cache" / "features").glob("*.npy")
    array.write_bytes(array.read_bytes()[:100])  # truncated
    _features(model, pre, from_folder(folder), tmp_path / "cache")
    assert extractions == [36, 36]
    record = json.loads(array.with_suffix(".json").read_text())
    assert record["shape"] == [36, model.num_features]


@pytest.mark.parametrize("solver", ["lbfgs", "minibatch"])
def test_runs_and_strategies_share_the_cache(tmp_path, image_folder, val_folder, extractions, solver):
    common = dict(backbone="tiny_resnet", epochs=3, lr=1e-3, batch_size=8, image_size=32, seed=0)
    common |= dict(cache_dir=str(tmp_path / "cache"), head_solver=solver)
    train, val = from_folder(image_folder), from_folder(val_folder)
    train_run(TrainConfig(strategy="linear-probe", **common), train, val, run_dir=tmp_path / "a")
    assert extractions == [36, 24]
    # lp-ft's probe phase starts from the same frozen pretrained-or-random weights (same seed): all hits.
    train_run(TrainConfig(strategy="lp-ft", **common), train, val, run_dir=tmp_path / "b")
    train_run(TrainConfig(strategy="linear-probe", **common), train, val, run_dir=tmp_path / "c")
    assert extractions == [36, 24]
