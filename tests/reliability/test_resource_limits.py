"""Runs that cannot fit are refused before they allocate: a bounded --image-size, and a memory estimate."""

from __future__ import annotations

import pytest

from transferkit.cli import main
from transferkit.train import memory


def _one_line(text: str) -> str:
    """Console output with its line wrapping undone (the width, and so the breaks, depend on the paths)."""
    return " ".join(text.split())


def _train(image_folder, out, *extra: str) -> int:
    return main(
        ["train", str(image_folder), "--backbone", "tiny_effnet", "--strategy", "full", "--epochs", "1",
         "--out", str(out), *extra]
    )  # fmt: skip


def test_an_absurd_image_size_is_a_config_error(image_folder, tmp_path, capsys):
    assert _train(image_folder, tmp_path, "--image-size", "100000") == 2
    err = _one_line(capsys.readouterr().err)
    assert "image_size must be between 16 and 2048" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_a_run_that_cannot_fit_in_memory_is_refused_with_the_estimate(image_folder, tmp_path, capsys, monkeypatch):
    # A machine with 200 MB to spare: 32 images of 512 px through the tiny EfficientNet need gigabytes.
    monkeypatch.setattr(memory, "available_memory", lambda device: (200_000_000, "available memory (MemAvailable)"))
    assert _train(image_folder, tmp_path, "--image-size", "512", "--batch-size", "32") == 2
    err = _one_line(capsys.readouterr().err)
    assert "not enough memory" in err and "512 px with batch 32" in err, err
    assert "200.0 MB is available memory" in err and "lower --batch-size (at most 2 would fit)" in err, err
    assert not list(tmp_path.iterdir()), "a refused run leaves no run folder"


@pytest.mark.parametrize(("px", "batch"), [(32, 4), (64, 8)])
def test_small_runs_fit(px, batch):
    from transferkit.models import build_model

    model = build_model("tiny_effnet", 3, pretrained=False).model
    estimate = memory.estimate_memory(model, px, batch, trains_backbone=True)
    assert 0 < estimate.total < 200_000_000
    memory.check_memory(estimate, model.conv_stem.weight.device, px)  # this machine has far more than that


def test_a_model_of_one_input_size_is_measured_at_that_size_and_keeps_its_modes():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3)  # fixed 224 px input
    model.blocks[0].eval()
    estimate = memory.estimate_memory(model, 224, 8, trains_backbone=True)
    assert estimate is not None and estimate.per_image > 0
    assert model.training and not model.blocks[0].training and model.blocks[1].training
