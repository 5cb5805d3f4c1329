"""Damaged checkpoints, the remaining cases: random bytes in a state file are damage (not an attack) and fall
back to `last.prev`; a truncated `best` is found on resume and replaced; commands that need `best` say that
`--checkpoint last` is there."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from torch import nn

from transferkit.cli import main
from transferkit.config import TrainConfig
from transferkit.data import from_folder
from transferkit.train._resume import read_resume_point
from transferkit.train.checkpoint import checkpoint_problem, load_training_state, save_training_state
from transferkit.train.runner import train_run


def _save(folder, value: float) -> None:
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    save_training_state(folder / "last", model, {"value": value}, {"optimizer": {}, "value": value})


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_in_the_state_file_fall_back_to_prev(tmp_path, seed):
    _save(tmp_path, 1.0)
    _save(tmp_path, 2.0)
    rng = random.Random(seed)
    (tmp_path / "last.state.pt").write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.choice([16, 300, 5000]))))
    used, meta, state, _, problems = load_training_state(tmp_path / "last")
    assert used == tmp_path / "last.prev" and meta["value"] == 1.0 and state["value"] == 1.0
    (problem,) = problems
    assert "last.state.pt: damaged training state" in problem and "run code" not in problem


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def damaged_run(full_run, tmp_path):
    """A copy of the finished 5-epoch run whose best.safetensors lost its second half."""
    run = tmp_path / "run"
    shutil.copytree(full_run.run_dir, run)
    _truncate(run / "best.safetensors")
    return run


def test_a_truncated_best_is_found_on_resume_and_replaced(damaged_run, image_folder, val_folder, capsys):
    assert "incomplete metadata" in checkpoint_problem(damaged_run / "best")
    config = TrainConfig(
        backbone="tiny_resnet", strategy="full", epochs=6, lr=2e-3, batch_size=8, image_size=32, seed=0, device="cpu"
    )
    train_run(config, from_folder(image_folder), from_folder(val_folder), run_dir=damaged_run, resume=True)
    err = capsys.readouterr().err.replace("\n", "")
    assert "the best checkpoint (epoch" in err and "cannot be read" in err
    assert checkpoint_problem(damaged_run / "best") is None
    assert read_resume_point(damaged_run, True).meta["epoch"] == 6


def test_commands_needing_best_suggest_the_last_checkpoint(damaged_run, val_folder, tmp_path, capsys):
    image = str(next((val_folder / "red").glob("*.png")))
    commands = {
        "evaluate": ["evaluate", str(damaged_run), str(val_folder)],
        "predict": ["predict", str(damaged_run), image],
        "export": ["export", str(damaged_run), "--format", "onnx", "--out", str(tmp_path / "export")],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.replace("\n", "")
        assert "best.safetensors: cannot be read" in err and "--checkpoint last" in err, name
    assert main(["predict", str(damaged_run), image, "--checkpoint", "last", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["path"] == image and len(result["top"]) == 3
