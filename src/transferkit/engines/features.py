"""The frozen feature extractor (forward_features + pooling) on torch, onnxruntime or MNN, checked against torch.

A frozen backbone in eval mode is a fixed function, so it can be exported once and run by an inference
engine that fuses BatchNorm into the convolutions and picks faster CPU kernels. Every engine is checked
against torch on real images before use (`EngineCheck`), and `auto` takes the fastest that passes.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit._console import console
from transferkit.config import ENGINES
from transferkit.engines._imports import optional_import
from transferkit.engines.mnn_tools import convert_onnx_to_mnn
from transferkit.engines.onnx_files import INPUT_NAME, write_onnx
from transferkit.engines.parity import EngineCheck
from transferkit.engines.runtimes import MnnRuntime, OnnxRuntime

__all__ = ["ENGINES", "FEATURES_NAME", "feature_runner"]

FEATURES_NAME = "features"
"""Output name of an exported feature extractor."""

FeatureRunner = Callable[[torch.Tensor], np.ndarray]


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
        x = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        return self.module(x).float().cpu().numpy()


class _Exported:
    """A runtime over an exported extractor, fed the torch batches the torch runner takes."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.runtime(batch.numpy())


def feature_runner(
    engine: str, model: nn.Module, size: int, sample: torch.Tensor, folder: Path | None, key: str
) -> FeatureRunner:
    """A callable (float32 NCHW batch) -> (N, features) array for `engine`.

    Args:
        engine: torch, onnxruntime, mnn, or auto (the fastest that passes the parity check, torch otherwise).
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
    runner = _TorchRunner(model)
    if engine == "torch":
        return runner
    # One choice per extractor and process: train, val and test features of a run share the checked engine.
    if (engine, key) in _CHOSEN:
        return _CHOSEN[(engine, key)]
    _CHOSEN.clear()  # one model copy kept, not one per backbone ever used
    _CHOSEN[(engine, key)] = chosen = _choose(engine, runner, model, size, sample, Path(folder or "."), key)
    return chosen


_CHOSEN: dict[tuple[str, str], FeatureRunner] = {}


def _choose(
    engine: str, runner: _TorchRunner, model: nn.Module, size: int, sample: torch.Tensor, folder: Path, key: str
) -> FeatureRunner:
    reference, torch_s = _timed(runner, sample)
    candidates: dict[str, tuple[FeatureRunner, float]] = {"torch": (runner, torch_s)}
    head = model.get_classifier()
    names = ["onnxruntime", "mnn"] if engine == "auto" else [engine]
    threads = max(1, torch.get_num_threads())
    for name in names:
        try:
            other = _build(name, model, size, folder, key, threads)
            features, seconds = _timed(other, sample)
        except ImportError:
            if engine != "auto":
                raise
            continue
        except Exception as exc:  # noqa: BLE001 - an engine that cannot run this model is skipped by auto
            if engine != "auto":
                raise
            console.print(f"engine {name}: unavailable for this model ({str(exc)[:200]})")
            continue
        check = EngineCheck(name, reference, features, head, seconds)
        console.print(str(check))
        if not check.ok:
            if engine != "auto":
                raise ValueError(f"engine {name} disagrees with torch on this model: {check}")
            continue
        candidates[name] = (other, seconds)
    best = min(candidates, key=lambda n: candidates[n][1])
    if engine == "auto":
        console.print(f"feature engine: {best} (torch {torch_s * 1000:.0f} ms/batch)")
    return candidates[best][0]


def _timed(runner: FeatureRunner, batch: torch.Tensor, repeats: int = 3) -> tuple[np.ndarray, float]:
    """Output and best-of-`repeats` seconds (the minimum is the least disturbed by other work on the machine)."""
    out = runner(batch)  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runner(batch)
        best = min(best, time.perf_counter() - start)
    return out, best


def _build(name: str, model: nn.Module, size: int, folder: Path, key: str, threads: int) -> FeatureRunner:
    # The package is imported before anything is exported, so that a missing one is reported first.
    optional_import("onnxruntime" if name == "onnxruntime" else "MNN")
    if name == "onnxruntime":
        return _Exported(OnnxRuntime(_onnx_file(model, size, folder, key), threads=threads))
    mnn_path = folder / f"{key}.mnn"
    if not mnn_path.is_file():
        tmp = mnn_path.with_name(f".{os.getpid()}.{mnn_path.name}")
        convert_onnx_to_mnn(_onnx_file(model, size, folder, key), tmp)
        os.replace(tmp, mnn_path)
    return _Exported(MnnRuntime(mnn_path, io_names=(INPUT_NAME, FEATURES_NAME), threads=threads))


def _onnx_file(model: nn.Module, size: int, folder: Path, key: str) -> Path:
    path = folder / f"{key}.onnx"
    if not path.is_file():
        write_onnx(_Pooled(copy.deepcopy(model).cpu()), path, size, output_name=FEATURES_NAME)
    return path
