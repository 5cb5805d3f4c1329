"""Runtimes: a model file (ONNX, MNN, TorchScript) as a function of float32 NCHW batches, registered by suffix.

Adding a runtime is one class here and its registration: `open_runtime` picks it by the file's suffix.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from transferkit.engines._imports import cpu_threads, optional_import
from transferkit.engines.errors import EngineError
from transferkit.engines.onnx_files import INPUT_NAME, OUTPUT_NAME

__all__ = [
    "ENGINE_SUFFIXES",
    "TORCHSCRIPT_EXTRA",
    "MnnRuntime",
    "OnnxRuntime",
    "Runtime",
    "TorchScriptRuntime",
    "open_runtime",
    "read_torchscript_metadata",
    "register_runtime",
    "run_session",
]

TORCHSCRIPT_EXTRA = "preprocessing.json"
"""Name of the extra file in a TorchScript archive that holds its preprocessing."""

ENGINE_SUFFIXES: dict[str, str] = {}
"""File suffix -> runtime kind (``onnx``, ``mnn``, ``torchscript``)."""
_RUNTIMES: dict[str, Callable[..., Runtime]] = {}


class Runtime(Protocol):
    """A loaded model: float32 NCHW batch in, float32 outputs (one row per image) out."""

    kind: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def register_runtime(kind: str, *suffixes: str):
    """Class decorator: the runtime for files ending in `suffixes`; a kind or suffix registered twice is an error."""

    def register(cls):
        taken = [s for s in suffixes if s in ENGINE_SUFFIXES]
        if kind in _RUNTIMES or taken:
            raise ValueError(f"runtime {kind!r} or suffix {taken} registered twice")
        _RUNTIMES[kind] = cls
        ENGINE_SUFFIXES.update(dict.fromkeys(suffixes, kind))
        cls.kind = kind
        return cls

    return register


def open_runtime(path: str | Path, *, io_names: tuple[str, str] | None = None, threads: int | None = None) -> Runtime:
    """The runtime of `path`'s suffix, loaded.

    Args:
        path: The model file.
        io_names: Input and output names (MNN needs them; default ``input`` and ``logits``).
        threads: CPU threads; default as many as torch uses.

    Raises:
        EngineError: Unknown suffix, or a file the runtime cannot read.
        MissingPackageError: The runtime's package is not installed.
    """
    path = Path(path)
    kind = ENGINE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise EngineError(f"{path}: unknown model file type; expected one of {', '.join(sorted(ENGINE_SUFFIXES))}")
    return _RUNTIMES[kind](path, io_names=io_names, threads=threads)


@register_runtime("onnx", ".onnx")
class OnnxRuntime:
    """An ONNX graph in onnxruntime on the CPU, with every graph optimisation on.

    Args:
        model: The file, or a serialised ModelProto.
        io_names: Unused: onnxruntime reads the names from the graph.
        threads: Intra-op threads; default onnxruntime's own choice.
    """

    def __init__(self, model: Path | bytes, *, io_names: tuple[str, str] | None = None, threads: int | None = None):
        ort = optional_import("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            where = "the graph" if isinstance(model, bytes) else str(model)
            raise EngineError(f"{where}: onnxruntime cannot load this file ({exc})") from exc

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return run_session(self.session, batch)


def run_session(session, batch: np.ndarray) -> np.ndarray:
    """The first output of an onnxruntime session for `batch`, in pieces when the file's batch size is fixed.

    Many foreign files were exported with a fixed batch (often 1); they are fed that many images at a time,
    the last piece padded with zeros and the padding's outputs dropped.
    """
    meta = session.get_inputs()[0]
    batch = np.ascontiguousarray(batch, np.float32)
    fixed = meta.shape[0] if meta.shape and isinstance(meta.shape[0], int) and meta.shape[0] > 0 else None
    if fixed is None or fixed == len(batch):
        return session.run(None, {meta.name: batch})[0]
    outputs = []
    for start in range(0, len(batch), fixed):
        piece = batch[start : start + fixed]
        n = len(piece)
        if n < fixed:
            piece = np.concatenate([piece, np.zeros((fixed - n, *piece.shape[1:]), np.float32)])
        outputs.append(session.run(None, {meta.name: piece})[0][:n])
    return np.concatenate(outputs)


@register_runtime("mnn", ".mnn")
class MnnRuntime:
    """An MNN file through MNN's expression API; outputs are flattened to one row per image."""

    def __init__(self, path: Path, *, io_names: tuple[str, str] | None = None, threads: int | None = None) -> None:
        mnn = optional_import("MNN")
        self._expr = mnn.expr
        names = io_names or (INPUT_NAME, OUTPUT_NAME)
        try:
            self.module = mnn.nn.load_module_from_file(
                str(path), [names[0]], [names[1]], thread_num=threads or cpu_threads()
            )
        except Exception as exc:  # MNN reports unreadable files as generic errors
            raise EngineError(f"{path}: MNN cannot load this file ({exc})") from exc
        if self.module is None:
            raise EngineError(f"{path}: MNN cannot load this file")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        var = self._expr.placeholder(list(batch.shape), self._expr.NCHW)
        var.write(batch)
        out = self.module.forward([var])[0]
        return np.array(out.read(), dtype=np.float32).reshape(batch.shape[0], -1)


@register_runtime("torchscript", ".pt", ".pts")
class TorchScriptRuntime:
    """A TorchScript archive on the CPU, in inference mode."""

    def __init__(self, path: Path, *, io_names: tuple[str, str] | None = None, threads: int | None = None) -> None:
        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit announces its deprecation on every call
                self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # torch.jit raises RuntimeError and friends for foreign files
            raise EngineError(f"{path}: not a TorchScript file ({exc})") from exc
        self._torch = torch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # The profiling executor re-optimises the graph for each new input shape, which costs seconds
        # per call on a CPU and gains nothing for a frozen convolutional network.
        with self._torch.inference_mode(), self._torch.jit.optimized_execution(False):
            return self.module(self._torch.from_numpy(np.ascontiguousarray(batch, np.float32))).numpy()


def read_torchscript_metadata(path: str | Path) -> dict | None:
    """The preprocessing stored in a TorchScript archive (`TORCHSCRIPT_EXTRA`), or None when it holds none.

    Raises:
        EngineError: The file is not a TorchScript archive.
    """
    import torch

    extra = {TORCHSCRIPT_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch.jit raises RuntimeError and friends for foreign files
        raise EngineError(f"{path}: not a TorchScript file ({exc})") from exc
    return json.loads(extra[TORCHSCRIPT_EXTRA]) if extra[TORCHSCRIPT_EXTRA] else None
