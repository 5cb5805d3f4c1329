"""Evaluation runs through the feature path training uses: the cache and engine for a frozen backbone."""

import logging

import pytest
import torch

from transferkit import TrainConfig, evaluate_run, from_folder, load_run, train_run
from transferkit.data import ImageDataset
from transferkit.evaluate import run_logits


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, image_folder, val_folder):
    config = TrainConfig(backbone="tiny_resnet", strategy="linear-probe", epochs=2, image_size=32, device="cpu")
    cache = tmp_path_factory.mktemp("probe-cache")
    config = TrainConfig(**{**config.to_dict(), "cache_dir": str(cache)})
    run = train_run(config, from_folder(image_folder), from_folder(val_folder), run_dir=cache.parent / "probe")
    return run, cache


def eager_logits(run, source) -> torch.Tensor:
    """The whole model on every image, as PyTorch runs it with nothing in between."""
    transform = run.preprocessing.eval_transform()
    x = torch.stack([ImageDataset(source, transform)[i][0] for i in range(len(source))])
    with torch.no_grad():
        return run.model(x)


def test_a_frozen_backbone_is_evaluated_through_the_feature_cache(probe_run, image_folder, caplog):
    result, cache = probe_run
    source = from_folder(image_folder).subset(list(range(0, 36, 2)))  # images the run never extracted as a set
    before = set((cache / "features").iterdir())
    with caplog.at_level(logging.INFO, logger="transferkit.data.feature_cache"):
        metrics, _ = evaluate_run(result.run_dir, source, out_dir=cache.parent / "eval-1")
        assert any("feature cache miss" in r.getMessage() for r in caplog.records)
        caplog.clear()
        again, _ = evaluate_run(result.run_dir, source, out_dir=cache.parent / "eval-2")
        assert any("feature cache hit" in r.getMessage() for r in caplog.records)
    assert set((cache / "features").iterdir()) > before
    assert again.accuracy == metrics.accuracy
    run = load_run(result.run_dir)
    fast, labels = run_logits(run, source)
    assert torch.allclose(fast, eager_logits(run, source), atol=1e-4)
    assert metrics.accuracy == pytest.approx(float((fast.argmax(1) == labels).float().mean()))


def test_a_fine_tuned_model_gives_the_eager_logits_without_a_cache_entry(full_run, val_folder):
    run = load_run(full_run.run_dir)
    source = from_folder(val_folder)
    fast, labels = run_logits(run, source)
    assert torch.allclose(fast, eager_logits(run, source), atol=1e-4)
    assert labels.tolist() == source.labels.tolist()
