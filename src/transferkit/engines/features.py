"""The frozen feature extractor (forward_features + pooling) on torch, onnxruntime or MNN, checked against torch.

A frozen backbone in eval mode is a fixed function, so it can be exported once and run by an inference
engine that fuses BatchNorm into the convolutions and picks faster CPU kernels. Every engine is checked
against torch on real images before use (`EngineCheck`), and `auto` takes the fastest that passes.
"""

from __future__ import annotations

import copy
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit._console import console
from transferkit.config import ENGINES
from transferkit.engines._choice import EngineChoice, installed_engines
from transferkit.engines._imports import optional_import
from transferkit.engines.mnn_tools import convert_onnx_to_mnn
from transferkit.engines.onnx_files import INPUT_NAME, write_onnx
from transferkit.engines.parity import EngineCheck
from transferkit.engines.runtimes import MnnRuntime, OnnxRuntime

__all__ = ["CHUNK", "ENGINES", "FEATURES_NAME", "feature_runner"]

FEATURES_NAME = "features"
"""Output name of an exported feature extractor."""

FeatureRunner = Callable[[torch.Tensor], np.ndarray]

CHUNK = 16
"""Images an extractor runs at once (see `_chunked`); also the size of the parity and timing sample."""
_TORCH_MARGIN = 1.2
"""auto keeps an exported engine unless torch is this much faster: one timing on a busy machine is noisy, and on
a quiet one the exported engines ran 2.3-3.5x faster than torch channels-last (BENCHMARKS.md, "CPU speed")."""


class _Pooled(nn.Module):
    """The backbone up to its pooled pre-logits features, as one module (for export)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class _TorchRunner:
    def __init__(self, model: nn.Module) -> None:
        # A private copy: channels_last suits oneDNN's CPU convolutions, and the training model is left as it was.
        self.module = _Pooled(copy.deepcopy(model)).eval().to(memory_format=torch.channels_last)
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return _chunked(self._run, batch)

    def _run(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        return self.module(x).float().cpu().numpy()


class _Exported:
    """A runtime over an exported extractor, fed the torch batches the torch runner takes."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return _chunked(lambda x: self.runtime(x.numpy()), batch)


def _chunked(run: Callable[[torch.Tensor], np.ndarray], batch: torch.Tensor) -> np.ndarray:
    """`run` over `batch` `CHUNK` images at a time: memory bounded by the chunk, not by the caller's batch.

    onnxruntime and MNN plan buffers per input shape and keep them, and torch's activations grow with the
    batch: at 192 px a 64-image batch held 1,088 MiB in onnxruntime, 374 MiB in MNN and ~1.2 GiB in torch, 16
    images 308 and 117 MiB in the engines, at the same images/s (the 2-core test machine). Chunks of the parity
    sample's size keep one plan.
    """
    if len(batch) <= CHUNK:
        return run(batch)
    return np.concatenate([run(batch[i : i + CHUNK]) for i in range(0, len(batch), CHUNK)])


def feature_runner(
    engine: str, model: nn.Module, size: int, sample: torch.Tensor, folder: Path | None, key: str
) -> FeatureRunner:
    """A callable (float32 NCHW batch) -> (N, features) array for `engine`.

    ``auto`` exports the extractor to each installed engine (onnxruntime, MNN), checks it against torch on
    `sample`, times it, and takes the fastest that agrees (torch when none does or none is installed, saying
    what to install). The choice and its evidence are kept in `folder` beside the exported files
    (`EngineChoice`), so a later run with the same weights, size and packages opens the chosen file directly.

    Args:
        engine: torch, onnxruntime, mnn, or auto.
        model: The frozen model (eval mode is used; the model itself is not changed).
        size: Input size in pixels.
        sample: A preprocessed batch of real images, for the parity check and the timing.
        folder: Where exported files are kept (reused by later runs with the same `key`).
        key: Identifies the extractor (weights and size) in file names.

    Raises:
        ValueError: Unknown engine, or an engine that fails the parity check was asked for by name.
        ImportError: The engine's package is not installed (the message says what to install).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "torch":
        return _TorchRunner(model)
    # One choice per extractor and process: train, val and test features of a run share the checked engine.
    if (engine, key) in _CHOSEN:
        return _CHOSEN[(engine, key)]
    _CHOSEN.clear()  # one model copy kept, not one per backbone ever used
    folder = Path(folder or ".")
    if engine == "auto":
        chosen = _auto(model, size, sample, folder, key)
    else:
        chosen, _ = _choose([engine], model, size, sample, folder, key, strict=True)
    _CHOSEN[(engine, key)] = chosen
    return chosen


_CHOSEN: dict[tuple[str, str], FeatureRunner] = {}
_MNN_BEFORE_FORK = False
"""This process was forked from one that had loaded MNN: MNN's thread pool does not survive a fork (a forked
child running it waited forever in the test suite), so auto leaves MNN out here."""


def _after_fork_in_child() -> None:
    global _MNN_BEFORE_FORK
    _CHOSEN.clear()  # the parent's runtimes hold its threads
    _MNN_BEFORE_FORK = _MNN_BEFORE_FORK or "MNN" in sys.modules


os.register_at_fork(after_in_child=_after_fork_in_child)


def _auto(model: nn.Module, size: int, sample: torch.Tensor, folder: Path, key: str) -> FeatureRunner:
    packages = installed_engines()
    forked = _MNN_BEFORE_FORK and packages.pop("mnn", None) is not None
    if forked:
        console.print("engine mnn: left out, this process was forked from one that had loaded MNN")
    if not packages:
        console.print(
            "feature engine: torch (onnxruntime or MNN would run the frozen backbone several times faster: "
            "pip install 'transferkit[export]')",
            markup=False,
        )
        return _TorchRunner(model)
    record = EngineChoice.read(folder, key, packages)
    if record is not None:
        evidence = record.checks.get(record.chosen, "")
        console.print(
            f"feature engine: {record.chosen} (chosen in an earlier run{': ' + evidence if evidence else ''})"
        )
        if record.chosen == "torch":
            return _TorchRunner(model)
        return _open(record.chosen, folder / record.file)
    chosen, record = _choose(list(packages), model, size, sample, folder, key, strict=False)
    record.packages = packages
    if not forked:  # a choice without MNN is not the machine's choice
        folder.mkdir(parents=True, exist_ok=True)
        record.write(folder, key)
    return chosen


def _choose(
    names: list[str], model: nn.Module, size: int, sample: torch.Tensor, folder: Path, key: str, *, strict: bool
) -> tuple[FeatureRunner, EngineChoice]:
    """The fastest of torch and `names` that agrees with torch on `sample`, and the record of the choice.

    Candidates are built one at a time and a slower one is dropped at once, so at most two are held in memory.
    With `strict` (an engine asked for by name) a missing package or a failed check is an error.
    """
    runner = _TorchRunner(model)
    reference, torch_s = _timed(runner, sample)
    best: tuple[str, FeatureRunner, float, str] = ("torch", runner, torch_s, "")
    record = EngineChoice("torch", {}, {"torch": f"{torch_s * 1000:.0f} ms/batch"})
    head = model.get_classifier()
    threads = max(1, torch.get_num_threads())
    for name in names:
        try:
            other, file = _build(name, model, size, folder, key, threads)
            features, seconds = _timed(other, sample)
        except ImportError:
            if strict:
                raise
            continue
        except Exception as exc:  # noqa: BLE001 - an engine that cannot run this model is skipped by auto
            if strict:
                raise
            console.print(f"engine {name}: unavailable for this model ({str(exc)[:200]})")
            continue
        check = EngineCheck(name, reference, features, head, seconds)
        console.print(str(check))
        record.checks[name] = str(check)
        if not check.ok:
            if strict:
                raise ValueError(f"engine {name} disagrees with torch on this model: {check}")
            continue
        if strict or seconds < (best[2] * _TORCH_MARGIN if best[0] == "torch" else best[2]):
            best = (name, other, seconds, file.name)
        del other
        gc.collect()  # a dropped runtime's buffers go before the next one is built
    record.chosen, record.file = best[0], best[3]
    if not strict:
        console.print(f"feature engine: {best[0]} (torch {torch_s * 1000:.0f} ms/batch)")
    return best[1], record


def _timed(runner: FeatureRunner, batch: torch.Tensor, repeats: int = 3) -> tuple[np.ndarray, float]:
    """Output and best-of-`repeats` seconds (the minimum is the least disturbed by other work on the machine)."""
    out = runner(batch)  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runner(batch)
        best = min(best, time.perf_counter() - start)
    return out, best


def _build(name: str, model: nn.Module, size: int, folder: Path, key: str, threads: int) -> tuple[FeatureRunner, Path]:
    # The package is imported before anything is exported, so that a missing one is reported first.
    optional_import("onnxruntime" if name == "onnxruntime" else "MNN")
    if name == "onnxruntime":
        path = _onnx_file(model, size, folder, key)
        return _open(name, path, threads), path
    mnn_path = folder / f"{key}.mnn"
    if not mnn_path.is_file():
        tmp = mnn_path.with_name(f".{os.getpid()}.{mnn_path.name}")
        convert_onnx_to_mnn(_onnx_file(model, size, folder, key), tmp)
        os.replace(tmp, mnn_path)
    return _open(name, mnn_path, threads), mnn_path


def _open(name: str, path: Path, threads: int | None = None) -> FeatureRunner:
    threads = threads or max(1, torch.get_num_threads())
    if name == "onnxruntime":
        return _Exported(OnnxRuntime(path, threads=threads))
    return _Exported(MnnRuntime(path, io_names=(INPUT_NAME, FEATURES_NAME), threads=threads))


def _onnx_file(model: nn.Module, size: int, folder: Path, key: str) -> Path:
    path = folder / f"{key}.onnx"
    if not path.is_file():
        write_onnx(_Pooled(copy.deepcopy(model).cpu()), path, size, output_name=FEATURES_NAME)
    return path
