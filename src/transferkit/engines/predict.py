"""Run an exported classifier file (ONNX, MNN, TorchScript) with the preprocessing saved with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit.data import ImageSource, Preprocessing, open_rgb
from transferkit.engines.errors import EngineError
from transferkit.engines.onnx_files import read_onnx_metadata
from transferkit.engines.runtimes import ENGINE_SUFFIXES, Runtime, open_runtime, read_torchscript_metadata

__all__ = [
    "SIDECAR",
    "Engine",
    "Sidecar",
    "engine_logits",
    "is_model_file",
    "iter_batches",
    "load_engine",
    "predict_files",
    "read_sidecar",
]

SIDECAR = "preprocessing.json"
"""The file beside an exported model that holds its `Sidecar` (MNN files carry no metadata of their own)."""
_REQUIRED = ("image_size", "mean", "std", "interpolation", "crop_pct", "classes", "backbone")


@dataclass(frozen=True)
class Sidecar:
    """What an exported classifier needs besides its weights: how to preprocess images and what its outputs mean.

    Its `to_dict` form is ``preprocessing.json`` beside the file and the file's own metadata (ONNX
    ``metadata_props``, the TorchScript archive's extra file).

    Example:
        >>> pre = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        >>> Sidecar(pre, ("cat", "dog"), "tiny_resnet").to_dict()["classes"]
        ['cat', 'dog']
    """

    preprocessing: Preprocessing
    classes: tuple[str, ...]
    """Class names, in the order of the model's outputs."""
    backbone: str
    """The backbone it was trained from (a registered name, or ``<file>@<node>`` for a cut model file)."""
    io_names: tuple[str, str] | None = None
    """Input and output names when they are not ``input`` and ``logits`` (MNN needs them)."""

    def to_dict(self) -> dict:
        """The preprocessing's JSON form with classes, backbone and (when set) io_names added."""
        values = {**self.preprocessing.to_dict(), "classes": list(self.classes), "backbone": self.backbone}
        if self.io_names is not None:
            values["io_names"] = list(self.io_names)
        return values

    @classmethod
    def from_dict(cls, values: dict, where: str | Path = "model file") -> Sidecar:
        """Read `to_dict`'s form.

        Raises:
            EngineError: A key is missing or a value invalid; the message names `where`.
        """
        missing = [k for k in _REQUIRED if k not in values]
        if missing:
            raise EngineError(f"{where}: preprocessing lacks {', '.join(missing)}")
        try:
            pre = Preprocessing.from_dict(values)
        except ValueError as exc:
            raise EngineError(f"{where}: {exc}") from None
        names = values.get("io_names")
        return cls(pre, tuple(values["classes"]), str(values["backbone"]), tuple(names) if names else None)


class Engine:
    """An exported classifier: float32 NCHW batches in, float32 logits out.

    Example:
        >>> engine = load_engine("runs/pets-001/export/model.onnx")       # doctest: +SKIP
        >>> engine(np.zeros((2, 3, 224, 224), np.float32)).shape          # doctest: +SKIP
        (2, 37)

    Attributes:
        path: The model file.
        kind: ``onnx``, ``mnn`` or ``torchscript``.
        sidecar: Its preprocessing, classes and backbone.
    """

    def __init__(self, path: Path, runtime: Runtime, sidecar: Sidecar) -> None:
        self.path, self.runtime, self.sidecar = path, runtime, sidecar
        self.kind = runtime.kind

    @property
    def preprocessing(self) -> Preprocessing:
        return self.sidecar.preprocessing

    @property
    def classes(self) -> list[str]:
        return list(self.sidecar.classes)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.runtime(batch)


def is_model_file(path: str | Path) -> bool:
    """True for an existing file whose suffix names an engine (`.onnx`, `.mnn`, `.pt`, `.pts`)."""
    path = Path(path)
    return path.suffix.lower() in ENGINE_SUFFIXES and path.is_file()


def load_engine(path: str | Path, *, threads: int | None = None) -> Engine:
    """Open an exported model file with the engine its suffix names.

    Args:
        path: ``.onnx`` (onnxruntime), ``.mnn`` (MNN) or ``.pt``/``.pts`` (TorchScript).
        threads: CPU threads for the engine; default the cores torch uses.

    Raises:
        EngineError: Unknown suffix, missing file, missing preprocessing, or a file the engine cannot read.
    """
    path = Path(path)
    if path.suffix.lower() not in ENGINE_SUFFIXES:
        raise EngineError(f"{path}: unknown model file type; expected one of {', '.join(sorted(ENGINE_SUFFIXES))}")
    if not path.is_file():
        raise EngineError(f"{path}: model file not found")
    sidecar = read_sidecar(path)
    return Engine(path, open_runtime(path, io_names=sidecar.io_names, threads=threads), sidecar)


def read_sidecar(path: str | Path) -> Sidecar:
    """The sidecar of a model file: its embedded metadata (ONNX, TorchScript), else `SIDECAR` beside it.

    Raises:
        EngineError: Neither is there, or a required key is missing.
    """
    path = Path(path)
    values = _embedded(path)
    if values is None:
        beside = path.parent / SIDECAR
        if not beside.is_file():
            raise EngineError(f"{path}: no preprocessing found; expected {beside} beside the model file")
        try:
            values = json.loads(beside.read_text())
        except json.JSONDecodeError as exc:
            raise EngineError(f"{beside}: not valid JSON ({exc})") from exc
    return Sidecar.from_dict(values, path)


def _embedded(path: Path) -> dict | None:
    kind = ENGINE_SUFFIXES.get(path.suffix.lower())
    if kind == "onnx":
        meta = read_onnx_metadata(path)
        return meta if all(k in meta for k in _REQUIRED) else None
    if kind == "torchscript":
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
    return np.concatenate([engine(batch) for batch in iter_batches(source, engine.preprocessing, batch_size)])


def predict_files(model_file: str | Path, paths: list[str | Path], *, top_k: int = 3) -> list[dict]:
    """Top-k classes for image files, from an exported model file; same output as `predict_images`.

    Raises:
        EngineError: The file cannot be used, or its output for an image is not finite.
    """
    import torch

    engine = load_engine(model_file)
    transform = engine.preprocessing.eval_transform()
    classes = engine.classes
    k = max(1, min(top_k, len(classes)))
    results = []
    for path in paths:
        logits = engine(transform(open_rgb(path)).unsqueeze(0).numpy())[0]
        if not np.isfinite(logits).all():
            raise EngineError(f"{model_file}: the model's output for {path} is not finite (NaN or infinite)")
        probs = torch.from_numpy(logits).softmax(0)
        values, indices = probs.topk(k)
        top = [
            {"class": classes[i], "index": int(i), "probability": float(v)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        results.append({"path": str(path), "top": top})
    return results
