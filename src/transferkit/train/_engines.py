"""Runners for the frozen feature extractor (forward_features + pooling): torch, onnxruntime, MNN.

A frozen backbone in eval mode is a fixed function, so it can be exported once and run by an inference
engine that fuses BatchNorm into the convolutions and picks faster CPU kernels. Every engine is checked
against torch on real images before use (max abs difference, cosine similarity, top-1 agreement of the
current head), and `auto` takes the fastest that passes.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit._console import console
from transferkit.config import ENGINES

__all__ = ["ENGINES", "EngineCheck", "feature_runner"]

_MIN_COSINE = 0.9999
_MIN_TOP1 = 0.99


class _Pooled(nn.Module):
    """The backbone up to its pooled pre-logits features, as one module (for export)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class _TorchRunner:
    name = "torch"

    def __init__(self, model: nn.Module) -> None:
        # A private copy: channels_last suits oneDNN's CPU convolutions, and the training model is left as it was.
        self.module = _Pooled(copy.deepcopy(model)).eval().to(memory_format=torch.channels_last)
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        return self.module(x).float().cpu().numpy()


class _OrtRunner:
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self.input: batch.numpy()})[0]


class _MnnRunner:
    name = "mnn"

    def __init__(self, path: Path, threads: int) -> None:
        import MNN

        self._expr = MNN.expr
        self.module = MNN.nn.load_module_from_file(str(path), ["input"], ["features"], thread_num=threads)
        if self.module is None:
            raise RuntimeError(f"MNN cannot load {path}")

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.numpy()
        var = self._expr.placeholder(list(x.shape), self._expr.NCHW)
        var.write(x)
        out = self.module.forward([var])[0]
        return np.array(out.read(), dtype=np.float32).reshape(x.shape[0], -1)


class EngineCheck:
    """How an engine's features compare with torch's on a sample batch, and how fast it ran it."""

    def __init__(self, name: str, reference: np.ndarray, features: np.ndarray, head: nn.Module, seconds: float):
        self.name, self.seconds = name, seconds
        self.max_abs_diff = float(np.abs(features - reference).max())
        a, b = torch.from_numpy(reference), torch.from_numpy(np.asarray(features))
        self.min_cosine = float(nn.functional.cosine_similarity(a, b, dim=1).min())
        with torch.inference_mode():
            self.top1 = float((head(a).argmax(1) == head(b).argmax(1)).float().mean())

    @property
    def ok(self) -> bool:
        return self.min_cosine >= _MIN_COSINE and self.top1 >= _MIN_TOP1

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "REJECTED"
        return (
            f"engine {self.name}: max |diff| {self.max_abs_diff:.2e}, min cosine {self.min_cosine:.6f}, "
            f"top-1 agreement {100 * self.top1:.1f}% vs torch; {self.seconds * 1000:.0f} ms/batch ({verdict})"
        )


def feature_runner(engine: str, model: nn.Module, size: int, sample: torch.Tensor, folder: Path, key: str):
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
    _CHOSEN[(engine, key)] = chosen = _choose(engine, runner, model, size, sample, folder, key)
    return chosen


_CHOSEN: dict[tuple[str, str], object] = {}


def _choose(engine: str, runner: _TorchRunner, model: nn.Module, size: int, sample: torch.Tensor, folder, key: str):
    reference, torch_s = _timed(runner, sample)
    candidates = {"torch": (runner, torch_s)}
    head = model.get_classifier()
    names = ["onnxruntime", "mnn"] if engine == "auto" else [engine]
    threads = max(1, torch.get_num_threads())
    for name in names:
        try:
            other = _build(name, model, size, folder, key, threads)
            features, seconds = _timed(other, sample)
        except ImportError as exc:
            if engine != "auto":
                raise ImportError(f"{exc}; install it with: pip install 'transferkit[export]'") from exc
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


def _timed(runner, batch: torch.Tensor, repeats: int = 3) -> tuple[np.ndarray, float]:
    """Output and best-of-`repeats` seconds (the minimum is the least disturbed by other work on the machine)."""
    out = runner(batch)  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runner(batch)
        best = min(best, time.perf_counter() - start)
    return out, best


def _build(name: str, model: nn.Module, size: int, folder: Path, key: str, threads: int):
    if name == "onnxruntime":
        import onnxruntime  # noqa: F401 - fail before exporting when it is missing

        return _OrtRunner(_onnx_file(model, size, folder, key), threads)
    import MNN  # noqa: F401

    mnn_path = folder / f"{key}.mnn"
    if not mnn_path.is_file():
        from transferkit.export.mnn import convert_onnx_to_mnn

        tmp = mnn_path.with_name(f".{os.getpid()}.{mnn_path.name}")
        convert_onnx_to_mnn(_onnx_file(model, size, folder, key), tmp)
        os.replace(tmp, mnn_path)
    return _MnnRunner(mnn_path, threads)


def _onnx_file(model: nn.Module, size: int, folder: Path, key: str) -> Path:
    path = folder / f"{key}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    module = _Pooled(copy.deepcopy(model).cpu()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces it is no longer the default
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, size, size),),
            str(tmp),
            dynamo=False,
            input_names=["input"],
            output_names=["features"],
            dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
        )
    os.replace(tmp, path)
    return path
