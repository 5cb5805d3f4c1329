"""A run killed at a random point (SIGKILL, or Ctrl-C) and resumed ends bit-identical to an uninterrupted one.

Each run is the `transferkit train` command in a forked process (forking skips the interpreter start-up:
torch and timm are already imported), with default settings: `--fast-depthwise` is on, and the tiny EfficientNet
has depthwise convolutions whose kernels a resume must take from the run's record, not from the machine's file.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

# Imported here, once: forked children inherit them instead of importing timm and friends each time.
import transferkit.finetuner  # noqa: F401
from transferkit.cli import main

# Tiny models: extra intra-op threads only contend on a shared machine (and forked children inherit this).
torch.set_num_threads(1)

SEED = int(os.environ.get("TRANSFERKIT_KILL_SEED", random.SystemRandom().randrange(10**6)))
STEPS_PER_EPOCH = 7  # 28 training images (36 minus a 20% split), batch 4


def _train_args(data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [
        "train", str(data), "--backbone", "tiny_effnet", "--batch-size", "4", "--image-size", "32",
        "--checkpoint-every-steps", "3", "--out", str(out), "--name", name, "--seed", "3", *extra,
    ]  # fmt: skip


def _child(argv: list[str], log: Path, *, kill_at_step: int = 0, kill_at_replace: int = 0, sigint_at: int = 0):
    """The body of a training child: the CLI with its kill hooks; never returns."""
    code = 99
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = open(fd, "w", buffering=1)  # noqa: SIM115 - the child exits with it open
        from transferkit.train import _tracker, checkpoint

        steps = {"n": 0}
        original_on_step = _tracker.Tracker.on_step

        def on_step(self, epoch, progress):
            original_on_step(self, epoch, progress)
            steps["n"] += 1
            if steps["n"] == kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
            if steps["n"] == sigint_at:
                os.kill(os.getpid(), signal.SIGINT)

        _tracker.Tracker.on_step = on_step
        if kill_at_replace:
            replaces = {"n": 0}
            real_replace = os.replace

            def replace(src, dst):
                replaces["n"] += 1
                if replaces["n"] == kill_at_replace:
                    os.kill(os.getpid(), signal.SIGKILL)
                real_replace(src, dst)

            checkpoint.os = _OsProxy(replace)
        code = main(argv)
    except BaseException:  # noqa: BLE001 - report anything, never unwind into the parent's test
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _zygote(conn) -> None:
    """Fork each training child from this process, started when the module was imported: forked from the test
    process itself, a child would inherit what earlier tests left there (a feature engine's thread pool that
    exists only in the parent), and could hang on it."""
    try:
        while True:
            argv, log, kill, env = conn.recv()
            pid = os.fork()
            if pid == 0:
                conn.close()
                os.environ.update(env)
                _child(argv, log, **kill)
            conn.send(pid)
            conn.send(os.waitpid(pid, 0)[1])
    finally:  # the test process has gone (EOF), or anything else: never unwind into pytest
        os._exit(0)


def _fork_cli(argv: list[str], log: Path, **kill) -> int:
    """Start the CLI in a child process (with the kill hooks of `_child`); returns its pid, for `_wait`."""
    _conn.send((argv, log, kill, {"TRANSFERKIT_CACHE": os.environ["TRANSFERKIT_CACHE"]}))
    return _conn.recv()


class _OsProxy:
    """`os` with `replace` swapped, for the checkpoint module only."""

    def __init__(self, replace):
        self.replace = replace

    def __getattr__(self, name):
        return getattr(os, name)


def _wait(pid: int, timeout: float = 240.0) -> int:
    """The raw exit status of the child `pid`; it is killed when it runs past `timeout` seconds."""
    if _conn.poll(timeout):
        return _conn.recv()
    os.kill(pid, signal.SIGKILL)
    _conn.recv()
    raise AssertionError("training child did not finish")


def _run(argv, log, **kw) -> int:
    return _wait(_fork_cli(argv, log, **kw))


def _assert_same_run(a: Path, b: Path, context: str) -> None:
    for stem in ("last", "best"):
        wa, wb = load_file(str(a / f"{stem}.safetensors")), load_file(str(b / f"{stem}.safetensors"))
        assert wa.keys() == wb.keys()
        different = [k for k in wa if not torch.equal(wa[k], wb[k])]
        assert not different, f"{context}: {stem} weights differ in {different[:5]}"
    sa = torch.load(a / "last.state.pt", weights_only=True)
    sb = torch.load(b / "last.state.pt", weights_only=True)
    oa, ob = sa["optimizer"], sb["optimizer"]
    assert oa["param_groups"] == ob["param_groups"], context
    assert oa["state"].keys() == ob["state"].keys()
    for i in oa["state"]:
        for key, value in oa["state"][i].items():
            assert torch.equal(value, ob["state"][i][key]), f"{context}: optimizer state {i}.{key} differs"
    assert sa["scheduler"] == sb["scheduler"], context
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"]), context

    def rows(run):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(run / "metrics.jsonl")]

    assert rows(a) == rows(b), f"{context}: metrics differ"


@pytest.fixture(scope="module")
def reference(image_folder, tmp_path_factory):
    """Uninterrupted runs to compare against: `full` for 2 epochs (per-image and whole-batch augmentation), and
    lp-ft (probe 1 + fine-tune 2)."""
    out = tmp_path_factory.mktemp("reference")
    source = timm.create_model("test_efficientnet", num_classes=0, pretrained=False)
    generator = torch.Generator().manual_seed(0)
    for name, buf in source.named_buffers():  # statistics as pretraining leaves them, kept while fine-tuning
        if name.endswith("running_var"):
            buf.uniform_(0.5, 2.0, generator=generator)
    torch.save(source.state_dict(), _PRETRAINED)
    runs = {}
    for name, extra in _EXTRA.items():
        status = _run(_train_args(image_folder, out, name, *extra), out / f"{name}.log")
        assert os.waitstatus_to_exitcode(status) == 0, (out / f"{name}.log").read_text()[-3000:]
        runs[name] = out / f"{name}-001"
    return runs


_LPFT = ["--strategy", "lp-ft", "--epochs", "3", "--lp-epochs", "1", "--head-solver", "minibatch"]
# padcrop: whole batches cut from the decoded-image array and augmented as tensors (ArrayBatches).
_PADCROP = ["--strategy", "full", "--epochs", "2", "--augmentation", "pad-crop"]
# pretrained: weights from a file, so BatchNorm keeps its statistics and is folded into the convolutions (fold_bn).
_PRETRAINED = Path(tempfile.gettempdir()) / f"transferkit-resume-{os.getpid()}-pretrained.pth"
_FOLDED = ["--strategy", "full", "--epochs", "2", "--weights", str(_PRETRAINED)]
# extras: the weight average, the pull toward the pretrained weights, per-stage rates and batch mixing, which a resume
# must continue exactly.
_EXTRAS = [*_FOLDED, "--ema", "0.9", "--l2-sp", "20", "--layer-decay", "0.7", "--mixup", "0.2", "--cutmix", "1"]
_EXTRA = {
    "full": ["--strategy", "full", "--epochs", "2"], "lpft": _LPFT, "padcrop": _PADCROP, "pretrained": _FOLDED,
    "extras": _EXTRAS,
}  # fmt: skip
_TOTAL = {"full": 2 * STEPS_PER_EPOCH, "lpft": 3 * STEPS_PER_EPOCH, "padcrop": 2 * STEPS_PER_EPOCH}
_TOTAL["pretrained"] = _TOTAL["extras"] = _TOTAL["full"]


def _kill_and_resume(image_folder, tmp_path, kind: str, **kill) -> tuple[Path, str]:
    argv = _train_args(image_folder, tmp_path, kind, *_EXTRA[kind])
    log = tmp_path / "run.log"
    status = _run(argv, log, **kill)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, log.read_text()[-3000:]
    assert not (tmp_path / f"{kind}-001" / "summary.json").exists()
    with _machine_kernels_flipped(tmp_path / f"{kind}-001"):
        status = _run([*argv, "--resume", "auto"], log)
    assert os.waitstatus_to_exitcode(status) == 0, log.read_text()[-3000:]
    return tmp_path / f"{kind}-001", log.read_text()


@contextmanager
def _machine_kernels_flipped(run: Path):
    """The machine's depthwise-kernel file says the other kernel for each shape the run recorded using (as if the
    file had been lost and the shapes timed again on a busier machine): a resume must follow the run's record."""
    files = list(Path(os.environ["TRANSFERKIT_CACHE"]).glob("depthwise-kernels-*.json"))
    assert files, "the runs should keep their depthwise-kernel choices in the cache folder"
    recorded = set()
    for state in (run / "last.state.pt", run / "last.prev.state.pt"):
        with suppress(Exception):  # missing, or the file the kill left half-written
            recorded |= set(torch.load(state, weights_only=True)["depthwise"])
    saved = {f: f.read_text() for f in files}
    flip = {"taps": "native", "native": "taps"}
    for f, text in saved.items():
        f.write_text(json.dumps({k: flip[v] if k in recorded else v for k, v in json.loads(text).items()}))
    try:
        yield
    finally:
        for f, text in saved.items():
            f.write_text(text)


# Steps after the first resumable state: step 3 (every 3 steps), or the end of the feature-cached probe epoch
# (saved after the hook of its last step runs).
_FIRST_SAVE = {"full": 3, "lpft": STEPS_PER_EPOCH + 1, "padcrop": 3, "pretrained": 3, "extras": 3}


@pytest.mark.parametrize("kind", ["full", "lpft", "padcrop", "pretrained", "extras"])
def test_sigkill_at_a_random_step_resumes_exactly(reference, image_folder, tmp_path, kind):
    step = random.Random(SEED).randrange(_FIRST_SAVE[kind], _TOTAL[kind])
    run, log = _kill_and_resume(image_folder, tmp_path, kind, kill_at_step=step)
    assert "resuming from last" in log
    _assert_same_run(reference[kind], run, f"{kind}: SIGKILL after step {step} (TRANSFERKIT_KILL_SEED={SEED})")


def test_sigkill_inside_a_checkpoint_write_resumes_exactly(reference, image_folder, tmp_path):
    # 3 writes + up to 6 renames per save; 6 saves per epoch (every 3 steps and at epoch end): any rename.
    call = random.Random(SEED + 1).randrange(4, 40)  # after the first save is complete
    run, _ = _kill_and_resume(image_folder, tmp_path, "full", kill_at_replace=call)
    _assert_same_run(reference["full"], run, f"SIGKILL at file rename {call} (TRANSFERKIT_KILL_SEED={SEED})")
    assert not [p for p in run.glob(".*") if p.name != ".lock"], "temporary files left behind"  # .lock: the run lock


def test_external_sigkill_at_a_random_moment_resumes_exactly(reference, image_folder, tmp_path):
    argv = _train_args(image_folder, tmp_path, "full", *_EXTRA["full"])
    state = tmp_path / "full-001" / "last.state.pt"
    pid = _fork_cli(argv, tmp_path / "run.log")
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(random.Random(SEED + 2).uniform(0, 0.05))
    os.kill(pid, signal.SIGKILL)
    status = _wait(pid)
    assert os.WIFSIGNALED(status), "the run finished before it could be killed"
    status = _run([*argv, "--resume", str(tmp_path / "full-001")], tmp_path / "run.log")
    assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "run.log").read_text()[-3000:]
    _assert_same_run(reference["full"], tmp_path / "full-001", f"external SIGKILL (TRANSFERKIT_KILL_SEED={SEED})")


def test_ctrl_c_saves_a_resumable_checkpoint(reference, image_folder, tmp_path):
    step = random.Random(SEED + 3).randrange(1, _TOTAL["full"] - 1)
    argv = _train_args(image_folder, tmp_path, "full", *_EXTRA["full"])
    status = _run(argv, tmp_path / "run.log", sigint_at=step)
    log = (tmp_path / "run.log").read_text()
    assert os.waitstatus_to_exitcode(status) == 130, log[-3000:]
    assert "resumable state saved" in log
    meta = json.loads((tmp_path / "full-001" / "last.json").read_text())
    # The flag is honoured at the next step boundary (or at the end of the epoch it falls in).
    saved_at = (meta["resume"]["epoch"] - 1) * STEPS_PER_EPOCH + meta["resume"]["step"]
    assert saved_at == (step if step % STEPS_PER_EPOCH == 0 else step + 1), (meta["resume"], step)
    status = _run([*argv, "--resume", "auto"], tmp_path / "run.log")
    assert os.waitstatus_to_exitcode(status) == 0
    _assert_same_run(reference["full"], tmp_path / "full-001", f"Ctrl-C after step {step}")


# Last, so that the zygote has every function above.
_conn, _zygote_end = multiprocessing.Pipe()
if os.fork() == 0:
    _conn.close()
    _zygote(_zygote_end)
_zygote_end.close()
