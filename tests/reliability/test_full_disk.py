"""A full disk under a cache or a checkpoint is a clear error naming what was needed and where, never a SIGBUS;
no partial file stays behind, and the previous checkpoint survives.

The real faults come from small tmpfs mounts (root only; skipped elsewhere); the free-space check is also
tested with a faked disk_usage so that it runs everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.data import ImageSource
from transferkit.data.errors import CacheFullError
from transferkit.data.feature_cache import FeatureCache
from transferkit.train.checkpoint import CheckpointError, load_training_state, save_training_state


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of the given size; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk-{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]
        result = subprocess.run(command, capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        # Lazy: a memory map still open (safetensors maps what it reads) must not keep the mount behind.
        subprocess.run(["umount", "-l", str(where)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# In a child process: a SIGBUS would kill the test runner itself. "race" skips the free-space check, as when
# something else fills the disk between the check and the writes.
FILL = """
import sys, numpy as np
import transferkit.data._cache_store as store
from transferkit.data import DataError, ImageSource
from transferkit.data.feature_cache import FeatureCache
if sys.argv[2] == "race":
    store.space_shortfall = lambda folder, need: None
source = ImageSource(classes=["a", "b"], labels=np.array([0, 1] * 4), arrays=np.zeros((8, 8, 8), np.uint8))
def extract(src, out):
    out[:] = 1.0
try:
    FeatureCache(sys.argv[1], verbose=False).features(source, {"backbone": "demo", "dim": 65536}, extract)
except DataError as exc:
    print(type(exc).__name__, exc)
    sys.exit(2)
"""


@pytest.mark.parametrize("when", ["before", "race"])
def test_feature_cache_on_a_full_disk_is_an_error_not_a_sigbus(small_disk, when):
    disk = small_disk("1m")  # the entry is 8 x 65536 float32 = 2.1 MB
    child = subprocess.run([sys.executable, "-c", FILL, str(disk), when], capture_output=True, text=True, timeout=120)
    assert child.returncode == 2, f"exit {child.returncode}: {child.stdout} {child.stderr[-2000:]}"
    assert child.stdout.startswith("CacheFullError no room on disk for a 8 x 65536 float32 cache entry")
    if when == "before":
        assert f"needs 2.2 MB, 1.0 MB free in {disk / 'features'}" in child.stdout
    assert _leftovers(disk) == []  # no orphan array


def test_decoded_cache_on_a_full_disk_stops_training_with_a_clear_error(small_disk, image_folder, tmp_path):
    disk = small_disk("64k")  # 36 decoded images need ~140 KB
    args = ["train", str(image_folder), "--backbone", "tiny_resnet", "--strategy", "full", "--epochs", "1"]
    args += ["--image-size", "32", "--device", "cpu", "--out", str(tmp_path / "runs"), "--cache-dir", str(disk)]
    # A child process again: without the fix, decoding into the memory map is a SIGBUS (exit -7).
    child = subprocess.run([sys.executable, "-m", "transferkit", *args], capture_output=True, text=True, timeout=300)
    out = (child.stdout + child.stderr).replace("\n", "")
    assert child.returncode == 2, f"exit {child.returncode}: {out[-2000:]}"
    assert "no room on disk for a " in out and f"free in {disk / 'decoded'}" in out and "--cache-dir" in out
    assert "Traceback" not in out
    assert _leftovers(disk) == []


def _model() -> nn.Module:
    return nn.Linear(100, 1000)  # 400 KB of weights


def _save(stem: Path, model: nn.Module, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)
    save_training_state(stem, model, {"value": value}, {"optimizer": {}, "value": value})


@pytest.mark.parametrize("when", ["before", "race"])
def test_a_full_disk_at_a_checkpoint_keeps_the_previous_set(small_disk, monkeypatch, when):
    disk = small_disk("1m")  # room for two sets (last and last.prev), not a third beside them
    stem, model = disk / "last", _model()
    _save(stem, model, 1.0)
    _save(stem, model, 2.0)
    before = _leftovers(disk)
    if when == "race":
        monkeypatch.setattr("transferkit.train.checkpoint.space_shortfall", lambda folder, need: None)
    with pytest.raises(CheckpointError, match="cannot save checkpoint last: the disk is full") as caught:
        _save(stem, model, 3.0)
    assert "previous checkpoint is kept" in str(caught.value) and f"--resume {disk}" in str(caught.value)
    if when == "before":
        assert f"free in {disk})" in str(caught.value)
    assert _leftovers(disk) == before  # nothing half-written, nothing lost
    read, meta, state, weights, problems = load_training_state(stem)
    assert read == stem and meta["value"] == 2.0 and not problems
    assert torch.equal(weights["weight"], torch.full((1000, 100), 2.0))


Usage = namedtuple("Usage", "total used free")


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    """Runs without root: a disk that reports 1 KB free refuses a cache entry and a checkpoint up front."""
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(real(path).total, real(path).total, 1000))
    source = ImageSource(classes=["a"], labels=np.zeros(4, np.int64), arrays=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(CacheFullError, match=r"needs 65\.6 KB, 1\.0 KB free in "):
        FeatureCache(tmp_path / "cache", verbose=False).features(source, {"dim": 4}, lambda s, out: None)
    assert _leftovers(tmp_path / "cache") == []
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match=r"the disk is full \(needs .* KB, 1\.0 KB free in "):
        _save(tmp_path / "run" / "last", _model(), 1.0)
    assert _leftovers(tmp_path / "run") == []
