"""SIGTERM is handled like Ctrl-C (save a resumable state, then stop), and Ctrl-C during feature extraction
stops within a batch instead of after the whole pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from transferkit.data import ImageSource
from transferkit.models import build_model
from transferkit.models.build import preprocessing_config
from transferkit.train import features as features_module
from transferkit.train._resume import read_resume_point
from transferkit.train._tracker import Tracker, catch_interrupts
from transferkit.train.features import cached_features
from transferkit.train.rundir import RunDir


def _wait_for(proc: subprocess.Popen, text: str, limit_s: float = 240) -> str:
    """Read the child's output until a line holds `text`; everything read so far."""
    seen, deadline = "", time.monotonic() + limit_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    proc.kill()
    pytest.fail(f"{text!r} never appeared; output: {seen[-2000:]}")


def test_sigterm_saves_a_resumable_state_and_stops(image_folder, tmp_path):
    run = tmp_path / "runs" / "shapes-001"
    argv = [sys.executable, "-m", "transferkit", "train", str(image_folder), "--backbone", "tiny_resnet"]
    argv += ["--strategy", "full", "--epochs", "200", "--image-size", "32", "--batch-size", "4", "--device", "cpu"]
    argv += ["--out", str(tmp_path / "runs"), "--name", "shapes"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        _wait_for(proc, "epoch   1")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 130, out  # like Ctrl-C; unhandled, SIGTERM ends it at once (-15)
    assert "SIGTERM: stopping after this step" in out and "interrupted: resumable state saved" in out
    point = read_resume_point(run, True)
    assert point.state["epoch"] >= 2  # epoch 1 was done: the state is at least that far, not a fresh start


def _signal_at_batch(monkeypatch, at: int) -> list[int]:
    """Send this process SIGINT while the `at`-th batch is prepared; returns the count of batches prepared."""
    made = [0]
    original = features_module._BatchMaker.__call__

    def call(self, rows):
        made[0] += 1
        if made[0] == at:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, rows)

    monkeypatch.setattr(features_module._BatchMaker, "__call__", call)
    return made


def test_ctrl_c_during_feature_extraction_stops_within_a_batch(tmp_path, monkeypatch, capsys):
    built = build_model("tiny_resnet", 3, pretrained=False)
    pre = preprocessing_config(built.model, built.spec, image_size=32, crop_pct=1.0)
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 255, (200, 32, 32, 3), dtype=np.uint8)
    source = ImageSource(classes=["a", "b", "c"], labels=np.arange(200) % 3, arrays=arrays)
    tracker = Tracker(RunDir(tmp_path / "run"), built.model, {}, patience=None, data={})
    made = _signal_at_batch(monkeypatch, at=2)
    with pytest.raises(KeyboardInterrupt), catch_interrupts(tracker):
        cached_features(built.model, "tiny_resnet", source, pre, cache_dir=tmp_path / "cache", batch_size=4)
    assert made[0] <= 4  # of 50 batches: the one running, and the one prepared beside it
    assert "interrupted during feature extraction" in capsys.readouterr().err
    assert not list((tmp_path / "cache").rglob("*.npy"))  # no partial cache entry left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored on the way out
