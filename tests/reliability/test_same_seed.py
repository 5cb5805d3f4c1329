"""Same seed, same data, same machine: the same weights bit for bit, with default settings, even on a busy machine.

`--fast-depthwise` (on by default) times two depthwise weight-gradient kernels that agree only to float rounding.
Here each run sees a different kernel as the faster one, as a loaded machine makes a close call go either way
(one kernel is slowed by a sleep while timed; its results are untouched), and the second run trains beside a
competing CPU load. The second run must still use the first one's kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import transferkit.finetuner  # noqa: F401 - imported once, inherited by the forked runs
from transferkit.cli import main

torch.set_num_threads(1)


def _fork_train(argv: list[str], log: Path, cache: Path, slow_kernel: str) -> int:
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(fd, "w", buffering=1)  # noqa: SIM115 - the child exits with it open
            os.environ["TRANSFERKIT_CACHE"] = str(cache)  # one machine's cache, shared by both runs
            from transferkit.train import _depthwise

            real = getattr(_depthwise, slow_kernel)

            def slowed(*args):
                time.sleep(0.002)
                return real(*args)

            setattr(_depthwise, slow_kernel, slowed)
            code = main(argv)
        except BaseException:  # noqa: BLE001 - report anything, never unwind into the parent's test
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_same_seed_twice_on_a_busy_machine_gives_the_same_weights(image_folder, tmp_path):
    argv = [
        "train", str(image_folder), "--backbone", "tiny_effnet", "--strategy", "full", "--epochs", "2",
        "--batch-size", "4", "--image-size", "32", "--seed", "5", "--out", str(tmp_path),
    ]  # fmt: skip
    cache, log = tmp_path / "cache", tmp_path / "train.log"
    assert _fork_train([*argv, "--name", "a"], log, cache, "_native_weight_grad") == 0, log.read_text()[-3000:]
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a competing CPU load
    try:
        assert _fork_train([*argv, "--name", "b"], log, cache, "_tap_weight_grad") == 0, log.read_text()[-3000:]
    finally:
        load.kill()
        load.wait()
    for stem in ("best", "last"):
        a = load_file(str(tmp_path / "a-001" / f"{stem}.safetensors"))
        b = load_file(str(tmp_path / "b-001" / f"{stem}.safetensors"))
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{stem}: {len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"
    state = torch.load(tmp_path / "a-001" / "last.state.pt", weights_only=True)
    assert "taps" in state["depthwise"].values(), "the run should record the kernels it used"
