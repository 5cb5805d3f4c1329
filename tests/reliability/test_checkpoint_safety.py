"""Atomic, verified, pickle-safe checkpoints: failed writes, damaged files and malicious state files."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from transferkit.config import TrainConfig
from transferkit.data import from_folder
from transferkit.models import WeightFileError
from transferkit.models._state_dict import read_state_dict
from transferkit.train import checkpoint as ckpt
from transferkit.train.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_training_state,
    save_training_state,
)
from transferkit.train.runner import train_run

README = Path(__file__).resolve().parents[2] / "README.md"


def _model(value: float) -> nn.Module:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(value)
    return model


def _state(step: int) -> dict:
    return {"optimizer": {"state": {}, "param_groups": []}, "step": step}


def _save(tmp_path: Path, value: float) -> None:
    save_training_state(tmp_path / "last", _model(value), {"classes": ["a", "b"]}, _state(int(value)))


def _loaded_value(stem_used, weights) -> float:
    return float(weights["weight"][0, 0])


def test_two_saves_keep_last_and_prev(tmp_path):
    _save(tmp_path, 1.0)
    _save(tmp_path, 2.0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"last{p}{s}" for p in ("", ".prev") for s in (".json", ".safetensors", ".state.pt"))
    stem, meta, state, weights, problems = load_training_state(tmp_path / "last")
    assert (stem.name, state["step"], _loaded_value(stem, weights), problems) == ("last", 2, 2.0, [])


def test_weights_write_failing_part_way_leaves_previous_intact(tmp_path, monkeypatch):
    _save(tmp_path, 1.0)

    def half_then_fail(state, path, metadata=None):
        Path(path).write_bytes(b"\x00" * 100)  # some bytes reached the disk, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", half_then_fail)
    with pytest.raises(CheckpointError, match="the disk is full.*No space.*previous checkpoint is kept"):
        _save(tmp_path, 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors", "last.state.pt"]
    stem, _, state, weights, problems = load_training_state(tmp_path / "last")
    assert (state["step"], _loaded_value(stem, weights), problems) == (1, 1.0, [])


def test_state_write_failing_at_fsync_leaves_no_temporary_file(tmp_path, monkeypatch):
    _save(tmp_path, 1.0)
    _save(tmp_path, 2.0)

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ckpt.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        _save(tmp_path, 3.0)
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or ".next" in p.name]
    _, _, state, _, _ = load_training_state(tmp_path / "last")
    assert state["step"] == 2


@pytest.mark.parametrize("damage", ["zero-byte state", "truncated weights", "zero-byte sidecar", "mixed saves"])
def test_damaged_last_falls_back_to_prev_with_a_reason(tmp_path, damage):
    _save(tmp_path, 1.0)
    _save(tmp_path, 2.0)
    if damage == "zero-byte state":
        (tmp_path / "last.state.pt").write_bytes(b"")
    elif damage == "truncated weights":
        data = (tmp_path / "last.safetensors").read_bytes()
        (tmp_path / "last.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "zero-byte sidecar":
        (tmp_path / "last.json").write_bytes(b"")
    else:  # the weights of one save with the state of another
        shutil.copy(tmp_path / "last.prev.safetensors", tmp_path / "last.safetensors")
    stem, _, state, weights, problems = load_training_state(tmp_path / "last")
    assert (stem.name, state["step"], _loaded_value(stem, weights)) == ("last.prev", 1, 1.0)
    assert len(problems) == 1 and "last" in problems[0]


def test_no_good_checkpoint_is_an_error_naming_the_files(tmp_path):
    _save(tmp_path, 1.0)
    (tmp_path / "last.state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last\.state\.pt"):
        load_training_state(tmp_path / "last")


class _Canary:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_malicious_state_is_refused_and_never_runs(tmp_path):
    _save(tmp_path, 1.0)
    _save(tmp_path, 2.0)
    canary = tmp_path / "canary-ran"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        (tmp_path / "last.state.pt").write_bytes(pickle.dumps({"optimizer": _Canary(canary)}, protocol=protocol))
        # A valid last.prev exists, but a file that would run code is not "damage": no fallback.
        with pytest.raises(UnsafeCheckpointError, match="refused"):
            load_training_state(tmp_path / "last")
    torch.save({"optimizer": _Canary(canary)}, tmp_path / "last.state.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_training_state(tmp_path / "last")
    assert not canary.exists()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage",
        b"\xff" * 8 + b"{}",
        b"\x10\x00\x00\x00\x00\x00\x00\x00" + b" " * 8,
    ],
    ids=["empty", "bad-json-header", "huge-header-length", "blank-header"],
)
def test_malformed_safetensors_are_rejected_cleanly(tmp_path, content):
    save_training_state(tmp_path / "best", _model(1.0), {"classes": ["a", "b"]}, _state(1))
    (tmp_path / "best.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "best", _model(0.0))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(content)
    with pytest.raises(WeightFileError, match="not a valid safetensors"):
        read_state_dict(weights)


def test_readme_documents_the_unsafe_pickle_switch():
    text = README.read_text()
    section = text[text.index("### Pretrained weights") : text.index("### The run directory")]
    assert "--allow-unsafe-pickle" in section and "weights_only=True" in section


@pytest.fixture
def finished_run(image_folder, tmp_path):
    config = TrainConfig(backbone="tiny_resnet", strategy="full", epochs=2, batch_size=8, image_size=32)
    train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    return config, tmp_path / "run"


def test_resume_with_a_zero_byte_last_continues_from_prev(finished_run, image_folder, capsys):
    config, run = finished_run
    (run / "last.state.pt").write_bytes(b"")
    capsys.readouterr()
    train_run(config, from_folder(image_folder), run_dir=run, resume=True)
    err = capsys.readouterr().err
    assert "resuming from last.prev" in err and "warning" in err
    summary = (run / "summary.json").read_text()
    assert '"checkpoint": "last.prev"' in summary


def test_resume_of_malicious_state_stops_the_run(finished_run, image_folder):
    config, run = finished_run
    canary = run / "canary-ran"
    (run / "last.state.pt").write_bytes(pickle.dumps({"optimizer": _Canary(canary)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        train_run(config, from_folder(image_folder), run_dir=run, resume=True)
    assert not canary.exists()


def test_resume_without_any_state_is_an_error(image_folder, tmp_path):
    config = TrainConfig(backbone="tiny_resnet", strategy="full", epochs=1, image_size=32)
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(CheckpointError, match="no complete training state"):
        train_run(config, from_folder(image_folder), run_dir=tmp_path / "empty-run", resume=True)


@pytest.mark.parametrize(("later", "stop_at"), [(False, n) for n in range(1, 7)] + [(True, n) for n in range(1, 10)])
def test_a_save_cut_short_at_any_rename_leaves_a_loadable_state(tmp_path, monkeypatch, later, stop_at):
    """The first save (3 writes + 3 renames) or a later one (3 writes + 6 renames), stopped at each rename."""
    real_replace, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise SystemExit("killed")  # nothing after this point runs, as with SIGKILL
        real_replace(src, dst)

    if later:
        _save(tmp_path, 1.0)  # the previous set exists and is rotated to .prev
    monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(SystemExit):
        _save(tmp_path, 2.0)
    monkeypatch.undo()
    if stop_at <= 3 and not later:
        # The first save died while writing: nothing complete exists yet, which is reported, not guessed.
        with pytest.raises(CheckpointError):
            load_training_state(tmp_path / "last")
        return
    stem, _, state, weights, _ = load_training_state(tmp_path / "last")
    # Once the new set is completely written (after 3 writes) it wins, and is moved into place as `last`.
    assert (stem.name, state["step"]) == ("last", 2 if stop_at > 3 else 1)
    assert float(weights["weight"][0, 0]) == state["step"]
    _, _, again, _, problems = load_training_state(tmp_path / "last", fallback=False)
    assert again["step"] == state["step"] and not problems
    if later and stop_at > 3:
        assert torch.load(tmp_path / "last.prev.state.pt", weights_only=True)["step"] == 1
