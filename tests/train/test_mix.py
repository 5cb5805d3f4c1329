"""MixUp / CutMix of training batches: soft targets, a draw fixed by (seed, epoch, step), the global RNG untouched."""

import pytest
import torch

from transferkit import TrainConfig
from transferkit.config import ConfigError
from transferkit.train._mix import BatchMix


def _batch():
    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).reshape(4, 3, 8, 8)
    return images, torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("mixup,cutmix", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mix_gives_soft_targets_that_sum_to_one_and_blends_images(mixup, cutmix):
    mix = BatchMix(3, mixup, cutmix, seed=0)
    images, labels = _batch()
    mixed, soft = mix(images.clone(), labels, epoch=1, step=0)
    assert soft.shape == (4, 3) and torch.allclose(soft.sum(1), torch.ones(4))
    assert not torch.equal(mixed, images)
    # Each row puts its largest weight on its own label (lam >= 0.5 is not guaranteed: some row carries its label).
    assert (soft.gather(1, labels[:, None]) > 0).all()


def test_the_draw_depends_on_seed_epoch_and_step_only_and_leaves_the_global_rng_alone():
    images, labels = _batch()
    mix = BatchMix(3, 0.2, 1.0, seed=5)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = [mix(images.clone(), labels, epoch=2, step=s) for s in range(4)]
    assert torch.equal(torch.random.get_rng_state(), before)
    b = [mix(images.clone(), labels, epoch=2, step=s) for s in range(4)]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert len({tuple(t[1].flatten().tolist()) for t in a}) > 1  # steps draw differently
    other = BatchMix(3, 0.2, 1.0, seed=6)(images.clone(), labels, epoch=2, step=0)
    assert not torch.equal(other[1], a[0][1]) or not torch.equal(other[0], a[0][0])


def test_mix_needs_a_positive_alpha_and_the_config_refuses_negative_ones():
    with pytest.raises(ValueError):
        BatchMix(3, 0.0, 0.0, seed=0)
    with pytest.raises(ConfigError, match="mixup"):
        TrainConfig(mixup=-1.0)
