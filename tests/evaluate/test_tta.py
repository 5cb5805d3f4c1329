"""Flip test-time augmentation (`TrainConfig.tta`): the mirrored pass, the averaged probabilities, the cache left
alone, and the same scoring in evaluate, run_logits and predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit import TrainConfig, evaluate_run, from_folder, load_run, predict_images, train_run
from transferkit.config import ConfigError
from transferkit.data import ImageSource
from transferkit.evaluate import average_probabilities, mirrored, run_logits


def _arrays(folder) -> ImageSource:
    """The folder's images as one array source (so a mirrored copy can be built by flipping the array)."""
    source = from_folder(folder)
    arrays = np.stack([np.asarray(source.load(i)) for i in range(len(source))])
    return ImageSource(list(source.classes), source.labels.copy(), arrays=arrays, name="shapes-arrays")


def test_mirrored_source_loads_each_image_flipped_left_to_right(image_folder):
    source = _arrays(image_folder)
    flipped = mirrored(source)
    assert len(flipped) == len(source) and np.array_equal(flipped.labels, source.labels)
    assert np.array_equal(np.asarray(flipped.load(3)), np.asarray(source.load(3))[:, ::-1])


def test_average_probabilities_is_the_log_of_the_mean_softmax():
    a, b = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    averaged = average_probabilities(a, b)
    assert torch.allclose(averaged.softmax(1), (a.softmax(1) + b.softmax(1)) / 2, atol=1e-6)
    assert torch.allclose(averaged.exp().sum(1), torch.ones(1))


@pytest.mark.parametrize("strategy", ["linear-probe", "full"])
def test_flip_tta_averages_each_image_with_its_mirror(image_folder, tmp_path, strategy):
    source = _arrays(image_folder)
    config = TrainConfig(backbone="tiny_resnet", strategy=strategy, epochs=2, image_size=32, batch_size=16, seed=0)
    run = train_run(config, source, run_dir=tmp_path / "run")
    loaded = load_run(run.run_dir)
    plain, labels = run_logits(loaded, source, tta="none")
    flipped_arrays = ImageSource(list(source.classes), source.labels, arrays=source.arrays[:, :, ::-1].copy())
    flipped, _ = run_logits(loaded, flipped_arrays, tta="none")
    both, again_labels = run_logits(loaded, source, tta="flip")
    assert torch.equal(labels, again_labels)
    assert torch.allclose(both, average_probabilities(plain, flipped), atol=1e-5)
    assert not torch.allclose(both.softmax(1), plain.softmax(1), atol=1e-4)
    # The mirrored pass must not have put its features in the clean images' cache entry.
    assert torch.equal(run_logits(loaded, source, tta="none")[0], plain)
    metrics, _ = evaluate_run(run.run_dir, source, tta="flip", out_dir=tmp_path / "eval-flip")
    assert metrics.accuracy == pytest.approx(float((both.argmax(1) == labels).float().mean()))


def test_a_run_trained_with_tta_flip_scores_with_it_everywhere(image_folder, tmp_path):
    config = TrainConfig(
        backbone="tiny_resnet", strategy="full", epochs=1, image_size=32, batch_size=16, seed=0, tta="flip"
    )
    run = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    loaded = load_run(run.run_dir)
    source = from_folder(image_folder)
    default, _ = run_logits(loaded, source)
    assert torch.equal(default, run_logits(loaded, source, tta="flip")[0])
    assert not torch.equal(default, run_logits(loaded, source, tta="none")[0])
    # predict runs one image at a time through the evaluation transform and mirrors the tensor.
    top = predict_images(run.run_dir, [source.paths[0]], top_k=3)[0]["top"]
    probs = {t["index"]: t["probability"] for t in top}
    expected = default[0].softmax(0)
    assert all(abs(probs[i] - float(expected[i])) < 1e-4 for i in probs)


def test_tta_takes_none_or_flip():
    with pytest.raises(ConfigError, match="tta 'crop'"):
        TrainConfig(tta="crop")
