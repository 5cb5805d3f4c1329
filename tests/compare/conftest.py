"""Fixtures for compare and report tests: generated images and one small comparison shared by many tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.compare import run_compare
from transferkit.config import TrainConfig
from transferkit.data import ImageSource

torch.set_num_threads(1)  # tiny models: extra threads only add synchronisation on a shared machine

# A class name with HTML metacharacters: the report must escape it.
CLASSES = ["red", "green", "<blue&>"]
STRATEGIES = ["linear-probe", "full", "scratch"]


def generated(per_class: int, seed: int, size: int = 32) -> ImageSource:
    """Three classes that differ in colour and pattern (stripes both ways, checkerboard), with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images, labels = [], []
    for label, (colour, pattern) in enumerate(
        [
            ((200, 30, 30), (yy // 4) % 2 == 0),
            ((30, 190, 40), (xx // 4) % 2 == 0),
            ((30, 40, 210), (xx // 4 + yy // 4) % 2 == 0),
        ]
    ):
        for _ in range(per_class):
            img = np.empty((size, size, 3), np.float32)
            img[:] = colour
            img[pattern] *= 0.5
            img += rng.normal(0, 15, img.shape)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(label)
    return ImageSource(list(CLASSES), np.array(labels), arrays=np.stack(images), name=f"generated-{seed}")


def tiny_config(**overrides) -> TrainConfig:
    base = {"backbone": "tiny_resnet", "epochs": 3, "image_size": 32, "batch_size": 16, "lr": 1e-3}
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="session")
def make_images():
    """`make_images(per_class, seed)`: an in-memory source of the three generated classes."""
    return generated


@pytest.fixture(scope="session")
def make_config():
    """`make_config(**overrides)`: a quick tiny_resnet TrainConfig."""
    return tiny_config


@pytest.fixture(scope="session")
def compared(tmp_path_factory):
    """linear-probe, full and scratch on 3 x 16 generated images (20% validation), with a test set."""
    out = tmp_path_factory.mktemp("compare")
    return run_compare(
        generated(16, seed=0), test=generated(6, seed=1), config=tiny_config(), strategies=STRATEGIES, out=out
    )
