"""Run an exported model file (ONNX, MNN, TorchScript) with the preprocessing saved beside it."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from transferkit.data import ImageSource, Preprocessing, open_rgb
from transferkit.export.errors import ExportError

__all__ = [
    "ENGINE_SUFFIXES",
    "Engine",
    "engine_logits",
    "is_model_file",
    "load_engine",
    "predict_files",
    "read_preprocessing",
    "run_session",
]

ENGINE_SUFFIXES = {".onnx": "onnx", ".mnn": "mnn", ".pt": "torchscript", ".pts": "torchscript"}
"""File suffix -> engine kind."""

SIDECAR = "preprocessing.json"
SIDECAR_KEYS = ("image_size", "mean", "std", "interpolation", "crop_pct", "classes", "backbone")


def is_model_file(path: str | Path) -> bool:
    """True for an existing file whose suffix names an engine (`.onnx`, `.mnn`, `.pt`, `.pts`)."""
    path = Path(path)
    return path.suffix.lower() in ENGINE_SUFFIXES and path.is_file()


class Engine:
    """An exported classifier: float32 NCHW batches in, float32 logits out.

    Example:
        >>> engine = load_engine("runs/pets-001/export/model.onnx")       # doctest: +SKIP
        >>> engine(np.zeros((2, 3, 224, 224), np.float32)).shape          # doctest: +SKIP
        (2, 37)

    Attributes:
        path: The model file.
        kind: ``onnx``, ``mnn`` or ``torchscript``.
        preprocessing: The sidecar: image_size, mean, std, interpolation, crop_pct, classes, backbone.
    """

    def __init__(self, path: Path, kind: str, preprocessing: dict) -> None:
        self.path, self.kind, self.preprocessing = path, kind, preprocessing

    @property
    def classes(self) -> list[str]:
        return list(self.preprocessing["classes"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _OnnxEngine(Engine):
    def __init__(self, path: Path, preprocessing: dict, threads: int | None) -> None:
        ort = _import("onnxruntime", "onnxruntime")
        super().__init__(path, "onnx", preprocessing)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise ExportError(f"{path}: onnxruntime cannot load this file ({exc})") from exc
        self.input_name = self.session.get_inputs()[0].name

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


class _MnnEngine(Engine):
    def __init__(self, path: Path, preprocessing: dict, threads: int | None) -> None:
        mnn = _import("MNN", "MNN")
        super().__init__(path, "mnn", preprocessing)
        self._expr = mnn.expr
        names = preprocessing.get("io_names", ["input", "logits"])
        try:
            self.module = mnn.nn.load_module_from_file(
                str(path), [names[0]], [names[1]], thread_num=threads or _cpu_threads()
            )
        except Exception as exc:  # MNN reports unreadable files as generic errors
            raise ExportError(f"{path}: MNN cannot load this file ({exc})") from exc
        if self.module is None:
            raise ExportError(f"{path}: MNN cannot load this file")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        var = self._expr.placeholder(list(batch.shape), self._expr.NCHW)
        var.write(batch)
        out = self.module.forward([var])[0]
        return np.array(out.read(), dtype=np.float32).reshape(batch.shape[0], -1)


class _TorchScriptEngine(Engine):
    def __init__(self, path: Path, preprocessing: dict, threads: int | None) -> None:
        import torch

        super().__init__(path, "torchscript", preprocessing)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit announces its deprecation on every call
                self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # torch.jit raises RuntimeError and friends for foreign files
            raise ExportError(f"{path}: not a TorchScript file ({exc})") from exc
        self._torch = torch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # The profiling executor re-optimises the graph for each new input shape, which costs seconds
        # per call on a CPU and gains nothing for a frozen convolutional network.
        with self._torch.inference_mode(), self._torch.jit.optimized_execution(False):
            return self.module(self._torch.from_numpy(np.ascontiguousarray(batch, np.float32))).numpy()


def load_engine(path: str | Path, *, threads: int | None = None) -> Engine:
    """Open an exported model file with the engine its suffix names.

    Args:
        path: ``.onnx`` (onnxruntime), ``.mnn`` (MNN) or ``.pt``/``.pts`` (TorchScript).
        threads: CPU threads for the engine; default the cores torch uses.

    Raises:
        ExportError: Unknown suffix, missing file, missing preprocessing, or a file the engine cannot read.
    """
    path = Path(path)
    kind = ENGINE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ExportError(f"{path}: unknown model file type; expected one of {', '.join(sorted(ENGINE_SUFFIXES))}")
    if not path.is_file():
        raise ExportError(f"{path}: model file not found")
    pre = read_preprocessing(path)
    engine_cls = {"onnx": _OnnxEngine, "mnn": _MnnEngine, "torchscript": _TorchScriptEngine}[kind]
    return engine_cls(path, pre, threads)


def read_preprocessing(path: str | Path) -> dict:
    """The preprocessing of a model file: embedded metadata (ONNX, TorchScript), else `preprocessing.json` beside it.

    Raises:
        ExportError: Neither is there, or a required key is missing.
    """
    path = Path(path)
    pre = _embedded_preprocessing(path)
    if pre is None:
        sidecar = path.parent / SIDECAR
        if not sidecar.is_file():
            raise ExportError(f"{path}: no preprocessing found; expected {sidecar} beside the model file")
        try:
            pre = json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise ExportError(f"{sidecar}: not valid JSON ({exc})") from exc
    missing = [k for k in SIDECAR_KEYS if k not in pre]
    if missing:
        raise ExportError(f"{path}: preprocessing lacks {', '.join(missing)}")
    return pre


def _embedded_preprocessing(path: Path) -> dict | None:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from transferkit.export.onnx import read_onnx_metadata

        meta = read_onnx_metadata(path)
        return meta if all(k in meta for k in SIDECAR_KEYS) else None
    if ENGINE_SUFFIXES.get(suffix) == "torchscript":
        from transferkit.export.torchscript import read_torchscript_metadata

        return read_torchscript_metadata(path)
    return None


def iter_batches(source: ImageSource, pre: Preprocessing, batch_size: int = 32) -> Iterator[np.ndarray]:
    """Evaluation-preprocessed float32 batches of `source`, in order."""
    import torch

    transform = pre.eval_transform()
    for start in range(0, len(source), batch_size):
        stop = min(start + batch_size, len(source))
        yield torch.stack([transform(source.load(i)) for i in range(start, stop)]).numpy()


def engine_logits(engine: Engine, source: ImageSource, batch_size: int = 32) -> np.ndarray:
    """Logits of every image of `source`, preprocessed as the engine's sidecar says."""
    pre = Preprocessing.from_dict(engine.preprocessing)
    return np.concatenate([engine(batch) for batch in iter_batches(source, pre, batch_size)])


def predict_files(model_file: str | Path, paths: list[str | Path], *, top_k: int = 3) -> list[dict]:
    """Top-k classes for image files, from an exported model file; same output as `predict_images`."""
    import torch

    engine = load_engine(model_file)
    transform = Preprocessing.from_dict(engine.preprocessing).eval_transform()
    classes = engine.classes
    k = max(1, min(top_k, len(classes)))
    results = []
    for path in paths:
        logits = engine(transform(open_rgb(path)).unsqueeze(0).numpy())[0]
        if not np.isfinite(logits).all():
            raise ExportError(f"{model_file}: the model's output for {path} is not finite (NaN or infinite)")
        probs = torch.from_numpy(logits).softmax(0)
        values, indices = probs.topk(k)
        top = [
            {"class": classes[i], "index": int(i), "probability": float(v)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        results.append({"path": str(path), "top": top})
    return results


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Discard what C code writes to file descriptor 1 meanwhile.

    MNN prints its CPU feature line on import straight to the process's stdout, which would corrupt
    machine-readable output such as ``transferkit predict --json``.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable descriptor 1 (e.g. a closed stdout): nothing to protect
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            try:
                yield
            finally:
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def _cpu_threads() -> int:
    import torch

    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _import(module: str, pip_name: str):
    import importlib

    try:
        if module == "MNN" and module not in sys.modules:
            with _stdout_silenced():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(
            f"{module} is not installed; install it with: pip install 'transferkit[export]' (or pip install {pip_name})"
        ) from exc
