"""The run directory: config, classes, metrics, load report and checkpoints of one training run."""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import re
import shutil
from pathlib import Path

from transferkit import _json as finite_json

__all__ = [
    "RunDir",
    "RunDirLockedError",
    "has_training_state",
    "latest_run_dir",
    "new_run_dir",
    "remove_unstarted",
    "resume_dir",
    "run_dir_name",
]

LOCK_FILE = ".lock"

# Locks this process holds, by resolved run folder: an flock belongs to one open file, so a second open in
# the same process would block itself; the descriptors stay open (and the locks held) until the process ends.
_held: dict[Path, int] = {}


class RunDirLockedError(RuntimeError):
    """Another live process holds the run directory."""


def run_dir_name(name: str) -> str:
    """`name` made safe as one folder name: no path separators, and no leading dot (``../x`` is ``x``, not a
    hidden ``..-x``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"


def _numbered(root: Path, safe: str) -> dict[int, Path]:
    if not root.is_dir():
        return {}
    return {
        int(m.group(1)): p for p in root.glob(f"{safe}-*") if (m := re.fullmatch(rf"{re.escape(safe)}-(\d+)", p.name))
    }


def new_run_dir(root: str | Path, name: str) -> Path:
    """`root/name-001`, `root/name-002`, ... the first that does not exist yet."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    safe = run_dir_name(name)
    path = root / f"{safe}-{max(_numbered(root, safe), default=0) + 1:03d}"
    path.mkdir()
    return path


def latest_run_dir(root: str | Path, name: str) -> Path | None:
    """The highest-numbered `root/name-NNN`, or None when there is none."""
    runs = _numbered(Path(root), run_dir_name(name))
    return runs[max(runs)] if runs else None


def has_training_state(path: Path) -> bool:
    """Whether the run folder holds a training state a resume can start from (`last` or `last.prev`)."""
    return any(path.glob("last*.state.pt"))


# What only a run that trained leaves behind: a folder without any of these never got past its setup.
_TRAINED = ("*.state.pt", "*.safetensors", "metrics.jsonl", "summary.json")


def remove_unstarted(path: Path) -> bool:
    """Remove the run folder `path` if its run never started training (no state, checkpoint or metrics).

    A start that fails in its setup (a bad ``--weights`` file, a split error) would otherwise leave a folder that
    looks like the newest run and hides the resumable one from ``--resume auto``.

    Returns:
        Whether the folder was removed.
    """
    if not path.is_dir() or any(next(path.glob(pattern), None) for pattern in _TRAINED):
        return False
    RunDir(path).unlock()
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def resume_dir(spec: str | Path, root: str | Path, name: str) -> Path | None:
    """The run directory `--resume spec` means, or None to start a new run.

    Args:
        spec: A run directory, or ``auto`` for the highest-numbered ``root/name-NNN`` that has a saved training
            state (newer folders without one, left by runs that never got to save, are passed over with a
            note); when there is none, a new run is started.
        root: The folder of run directories (``--out``).
        name: The run name.

    Raises:
        FileNotFoundError: `spec` names a directory that does not exist.
    """
    from transferkit._console import console

    if str(spec) == "auto":
        runs, found, newer = _numbered(Path(root), run_dir_name(name)), None, []
        for number in sorted(runs, reverse=True):
            if has_training_state(runs[number]):
                found = runs[number]
                break
            newer.append(runs[number].name)
        without = f" ({', '.join(newer)} without one)" if newer else ""
        if found is None:
            console.print(
                f"--resume auto: no run named {run_dir_name(name)} in {root} has a saved training state{without}; "
                "starting a new run"
            )
        elif newer:
            console.print(f"--resume auto: resuming {found}, the newest with a saved training state{without}")
        return found
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume {spec}: run directory not found")
    return path


class RunDir:
    """Paths and writers of a run directory.

    Layout: ``config.yaml``, ``classes.json``, ``load_report.json``, ``metrics.jsonl``, ``metrics.csv``,
    ``best.safetensors``/``best.json``, ``last.safetensors``/``last.json``/``last.state.pt`` (resumable, with
    the set before it as ``last.prev.*``), ``summary.json``.
    """

    def __init__(self, path: str | Path, *, lock: bool = False) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if lock:
            self.lock()

    def lock(self) -> None:
        """Hold the run directory exclusively for the rest of this process's life.

        Two processes writing one run would interleave metrics and replace each other's checkpoints. The lock
        is an ``flock`` on ``.lock``: the OS releases it when the process ends however it ends (a SIGKILL
        included), so no stale lock can block a resume. Calling it again in the same process does nothing.

        Raises:
            RunDirLockedError: another process holds it (the message names its pid).
        """
        key = self.path.resolve()
        if key in _held:
            return
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RunDirLockedError(
                f"{self.path} is in use by {who}: wait for it to finish (or stop it) before training or resuming "
                "this run"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = fd

    def unlock(self) -> None:
        """Let another process take the run directory (only needed before this process ends)."""
        fd = _held.pop(self.path.resolve(), None)
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file releases its flock

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def last(self) -> Path:
        return self.path / "last"

    def write_json(self, name: str, data: object) -> Path:
        path = self.path / name
        path.write_text(finite_json.dumps(data, indent=2, default=str))
        return path

    def read_json(self, name: str) -> object:
        return json.loads((self.path / name).read_text())

    def update_summary(self, **values: object) -> None:
        """Add figures found after training (the test accuracy) to summary.json."""
        path = self.path / "summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        self.write_json("summary.json", {**summary, **values})

    def append_metrics(self, row: dict) -> None:
        """One epoch's figures, appended to metrics.jsonl and metrics.csv as soon as they exist.

        A NaN or infinite figure (a diverged epoch) is written as null, keeping metrics.jsonl valid JSON.
        """
        with open(self.path / "metrics.jsonl", "a") as fh:
            fh.write(finite_json.dumps(row) + "\n")
        csv_path = self.path / "metrics.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def truncate_metrics(self, before_epoch: int) -> None:
        """Drop metric rows of epochs >= `before_epoch`: a resumed run writes them again."""
        rows = [row for row in self.metrics() if int(row["epoch"]) < before_epoch]
        for name in ("metrics.jsonl", "metrics.csv"):
            (self.path / name).unlink(missing_ok=True)
        for row in rows:
            self.append_metrics(row)

    def metrics(self) -> list[dict]:
        """The rows of metrics.jsonl; a null figure (not finite when written) reads back as NaN."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [{k: math.nan if v is None else v for k, v in row.items()} for row in rows]
