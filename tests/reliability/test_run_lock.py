"""One process at a time per run directory: a second one is refused by name, and a killed holder leaves no lock."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys

import pytest

from transferkit.train.rundir import RunDir, RunDirLockedError

# Takes the lock, says so, then waits to be killed (or for stdin to close).
HOLD = (
    "import sys; from transferkit.train.rundir import RunDir\n"
    "RunDir(sys.argv[1], lock=True); print('held', flush=True); sys.stdin.read()\n"
)
# Tries to take the lock once; prints the refusal and exits 3, or exits 0 when it got it.
TRY = (
    "import sys; from transferkit.train.rundir import RunDir, RunDirLockedError\n"
    "try:\n    RunDir(sys.argv[1], lock=True)\n"
    "except RunDirLockedError as exc:\n    print(exc); sys.exit(3)\n"
)


def _holder(run_dir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _try(run_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY, str(run_dir)], capture_output=True, text=True, timeout=60)


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        second = _try(tmp_path / "run")
        assert second.returncode == 3, second.stderr
        assert f"in use by process {holder.pid}" in second.stdout
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_sigkill_of_the_holder_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert (tmp_path / "run" / ".lock").exists()  # the file stays; the lock went with the process
    second = _try(tmp_path / "run")
    assert second.returncode == 0, second.stdout + second.stderr


def _free(run_dir) -> bool:
    """Whether a new open of the lock file could take it (flock is per open file, so this sees our own lock)."""
    fd = os.open(run_dir / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_lock_is_reentrant_in_one_process_and_unlock_frees_it(tmp_path):
    run = RunDir(tmp_path / "run", lock=True)
    RunDir(tmp_path / "run", lock=True)  # the same process again: no self-deadlock
    assert not _free(tmp_path / "run")
    run.unlock()
    assert _free(tmp_path / "run")


def test_the_cli_reports_a_locked_run_in_one_line(tmp_path):
    from transferkit._errors import USER_ERRORS

    assert issubclass(RunDirLockedError, USER_ERRORS)  # the CLI prints these as "error: ..." and exits 2


def test_training_refuses_a_run_another_process_is_training(image_folder, tmp_path):
    from transferkit.config import TrainConfig
    from transferkit.data import from_folder
    from transferkit.train.runner import train_run

    config = TrainConfig(backbone="tiny_resnet", strategy="full", epochs=1, batch_size=8, image_size=32, device="cpu")
    holder = _holder(tmp_path / "run")  # stands for a `transferkit train` still running in this folder
    try:
        with pytest.raises(RunDirLockedError, match=f"in use by process {holder.pid}"):
            train_run(config, from_folder(image_folder), run_dir=tmp_path / "run", resume=True)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing was written beside the other process
