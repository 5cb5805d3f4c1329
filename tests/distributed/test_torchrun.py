"""`torchrun --nproc_per_node 2 -m transferkit train ...` (gloo, CPU) against one process with the same global batch.

Under torchrun, BatchNorm layers are synchronised (`sync_bn`, on by default; on CPU transferkit's own
all_reduce version), so both runs normalise with the statistics of the whole global batch and train the
same model up to floating-point summation order. SGD keeps that order-of-summation noise small; Adam
divides by the gradients' own size and would magnify it in parameters whose gradients are nearly zero.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transferkit.cli import main
from transferkit.train.checkpoint import CheckpointError


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _train_args(image_folder: Path, val_folder: Path, out: Path, cache: Path) -> list[str]:
    return [
        "train",
        str(image_folder),
        "--val",
        str(val_folder),
        "--backbone",
        "tiny_resnet",
        "--strategy",
        "full",
        "--epochs",
        "2",
        "--optimizer",
        "sgd",
        "--lr",
        "5e-3",
        # 36 images in batches of 8: four even batches, then one of 4 (2 per process).
        "--batch-size",
        "8",
        "--image-size",
        "32",
        # At the default crop scale (0.8) this 36-image run sits on a knife-edge: the two runs part by 6e-4 in the
        # first epoch's mean loss, while at 0.5, 0.6, 0.9 and 1.0 they agree within the tolerance below (the crops
        # come from the same per-sample seeds either way; a rounding difference of the reductions tips a tie).
        "--crop-scale",
        "0.9",
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--name",
        "shapes",
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, image_folder, val_folder):
    """The same command, once under torchrun with 2 processes and once in this process."""
    root = tmp_path_factory.mktemp("ddp")
    cache = root / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERKIT_CACHE": str(cache)}
    command = [*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "transferkit"]
    done = subprocess.run(
        command + _train_args(image_folder, val_folder, root / "ddp", cache),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert main(_train_args(image_folder, val_folder, root / "single", cache)) == 0
    return root / "ddp", root / "single", done.stderr  # what training says goes to stderr


@pytest.mark.slow
def test_two_processes_train_the_same_weights_as_one(runs):
    ddp, single, _ = runs
    a, b = load_file(ddp / "shapes-001" / "last.safetensors"), load_file(single / "shapes-001" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], atol=2e-4, rtol=1e-3, msg=lambda m, k=key: f"{k}: {m}")
        else:  # num_batches_tracked: both saw the same number of steps
            assert torch.equal(a[key], b[key]), key
    # The match is not for want of training: in its last epoch the weights moved far more than the tolerance.
    prev = load_file(ddp / "shapes-001" / "last.prev.safetensors")
    assert max(float((a[k] - prev[k]).abs().max()) for k in a if a[k].is_floating_point()) > 1e-2
    rows = [
        [json.loads(line) for line in (d / "shapes-001" / "metrics.jsonl").read_text().splitlines()]
        for d in (ddp, single)
    ]
    assert [r["epoch"] for r in rows[0]] == [r["epoch"] for r in rows[1]] == [1, 2]
    for x, y in zip(*rows, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-3)
        assert x["train_acc"] == pytest.approx(y["train_acc"])  # sums of correct counts over both processes
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-3)
        assert x["val_acc"] == pytest.approx(y["val_acc"])


@pytest.mark.slow
def test_only_rank_zero_writes(runs):
    ddp, single, said = runs
    assert [p.name for p in ddp.iterdir()] == ["shapes-001"]  # one run directory, not one per process
    files = sorted(p.name for p in (ddp / "shapes-001").iterdir())
    assert files == sorted(p.name for p in (single / "shapes-001").iterdir())
    assert not [f for f in files if ".tmp" in f or (f.startswith(".") and f != ".lock")]  # .lock: the run lock
    summary = json.loads((ddp / "shapes-001" / "summary.json").read_text())
    assert summary["device"] == "cpu"
    assert said.count("best val acc") == 1  # rank 1 prints nothing
    assert said.count("epoch   2 [full]") == 1


@pytest.mark.slow
def test_resuming_with_another_number_of_processes_is_an_error(runs, tmp_path, image_folder):
    from transferkit import TrainConfig, from_folder, train_run

    ddp, _, _ = runs
    run = tmp_path / "shapes-001"
    shutil.copytree(ddp / "shapes-001", run)
    state = torch.load(run / "last.state.pt", weights_only=True)
    assert state["world_size"] == 2
    config = TrainConfig.from_yaml(run / "config.yaml")
    with pytest.raises(CheckpointError, match="trained with 2"):
        train_run(config, from_folder(image_folder), run_dir=run, resume=True)


@pytest.mark.slow
def test_two_processes_agree_on_a_time_budget_plan(tmp_path, image_folder, val_folder):
    # Each process times its own steps; both must train the planned epochs together (a disagreement would hang).
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERKIT_CACHE": str(cache)}
    command = [*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "transferkit"]
    argv = _train_args(image_folder, val_folder, tmp_path / "out", cache) + ["--time-budget", "10m"]
    done = subprocess.run(command + argv, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "out" / "shapes-001"
    assert json.loads((run / "budget.json").read_text()) == {"full": 2}  # 2 epochs asked, both fit in 10 minutes
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
