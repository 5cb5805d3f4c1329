"""Which depthwise weight-gradient kernel each shape uses, decided once and then kept.

The two kernels of `_depthwise` give the same gradient only to float rounding, so the choice changes the weights.
Timing them afresh in every process made two runs with the same seed differ whenever the machine was busy (a
loaded CPU flips the close calls), and a resumed run could pick other kernels than the run it continues. So a
shape is timed once per machine and the winner kept in a small file in the cache folder; every later run on the
machine reads it, and a run records the choices it used in its training state, so a resume uses those even when
the machine's file has gone or changed.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["NATIVE", "TAPS", "KernelChoices", "shape_key", "time_once"]

NATIVE, TAPS = "native", "taps"


def shape_key(x: torch.Tensor, weight: torch.Tensor, stride: tuple, padding: tuple) -> str:
    """A readable key for one depthwise layer's call: input and kernel shapes, stride, padding, dtype, layout."""
    layout = "cl" if x.is_contiguous(memory_format=torch.channels_last) else "nchw"
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    return (
        f"{n}x{c}x{h}x{w} k{kh}x{kw} s{stride[0]}x{stride[1]} p{padding[0]}x{padding[1]} "
        f"{str(x.dtype).removeprefix('torch.')} {layout}"
    )


class KernelChoices:
    """The kernel per shape: the run's record first, then this machine's file, else timed now and added to both.

    Args:
        path: This machine's choice file (None: keep the choices in memory only).
        recorded: The choices a resumed run used so far (``{shape key: "native" | "taps"}``).

    Example:
        >>> choices = KernelChoices(None, {"8x4x4x4 k3x3 s1x1 p1x1 float32 nchw": "taps"})
        >>> choices.used
        {'8x4x4x4 k3x3 s1x1 p1x1 float32 nchw': 'taps'}
    """

    def __init__(self, path: Path | None, recorded: dict[str, str] | None = None) -> None:
        self.path = path
        self.used: dict[str, str] = {k: v for k, v in (recorded or {}).items() if v in (NATIVE, TAPS)}
        """Every choice this run has made or inherited: what its training state records."""

    @classmethod
    def for_machine(cls, cache_dir: Path, recorded: dict[str, str] | None = None) -> KernelChoices:
        """The choices kept in `cache_dir` for this PyTorch version and thread count (speeds depend on both)."""
        name = f"depthwise-kernels-torch{torch.__version__.split('+')[0]}-threads{torch.get_num_threads()}.json"
        return cls(cache_dir / name, recorded)

    def choose(self, key: str, time_kernels: Callable[[], tuple[float, float]]) -> str:
        """The kernel for `key`; `time_kernels()` gives (native, taps) seconds when the shape is new to the machine."""
        choice = self.used.get(key)
        if choice is None:
            choice = self._from_machine(key, time_kernels)
            self.used[key] = choice
        return choice

    def _from_machine(self, key: str, time_kernels: Callable[[], tuple[float, float]]) -> str:
        if self.path is None:
            return _faster(time_kernels())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                # Held while timing, so two runs starting together time a shape once and agree on it.
                fcntl.flock(lock, fcntl.LOCK_EX)
                known = self._read()
                if key not in known:
                    known[key] = _faster(time_kernels())
                    self._write(known)
                return known[key]
        except OSError:  # a read-only or full cache folder: the run still records what it used
            return _faster(time_kernels())

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if v in (NATIVE, TAPS)} if isinstance(data, dict) else {}

    def _write(self, known: dict[str, str]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".depthwise-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(known, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise


def _faster(seconds: tuple[float, float]) -> str:
    native, taps = seconds
    return TAPS if taps < native else NATIVE


def time_once(fn: Callable[[], object]) -> float:
    """Seconds of one call after an untimed first one (which builds kernels and buffers)."""
    fn()
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began
