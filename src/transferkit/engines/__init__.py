"""Inference engines below training and export: one layer that runs models on torch, onnxruntime, MNN or TorchScript.

- `features`: the frozen feature extractor on the fastest engine that agrees with torch (``--engine``).
- `predict`: an exported classifier file with its `Sidecar` (preprocessing, classes): logits and top-k.
- `parity`: whether an engine computes what torch computes (`EngineCheck`, `compare_logits`).
- `runtimes`: a model file as a function of batches, one registered class per file type.
- `onnx_files`, `mnn_tools`: writing ONNX (the one place a torch module becomes ONNX) and converting it to MNN.

Example:
    >>> from transferkit.engines import load_engine
    >>> engine = load_engine("runs/pets-001/export/model.onnx")       # doctest: +SKIP
    >>> engine.classes[:2], engine.preprocessing.image_size           # doctest: +SKIP
    (['abyssinian', 'bengal'], 224)
"""

from transferkit.engines.errors import EngineError, MissingPackageError
from transferkit.engines.features import ENGINES, feature_runner
from transferkit.engines.mnn_tools import convert_onnx_to_mnn
from transferkit.engines.onnx_files import read_onnx_metadata, write_onnx
from transferkit.engines.parity import FP32_TOLERANCE, INT8_TOLERANCE, EngineCheck, Tolerance, compare_logits
from transferkit.engines.predict import (
    Engine,
    Sidecar,
    engine_logits,
    is_model_file,
    iter_batches,
    load_engine,
    predict_files,
    read_sidecar,
)
from transferkit.engines.runtimes import ENGINE_SUFFIXES, open_runtime

__all__ = [
    "ENGINES",
    "ENGINE_SUFFIXES",
    "FP32_TOLERANCE",
    "INT8_TOLERANCE",
    "Engine",
    "EngineCheck",
    "EngineError",
    "MissingPackageError",
    "Sidecar",
    "Tolerance",
    "compare_logits",
    "convert_onnx_to_mnn",
    "engine_logits",
    "feature_runner",
    "is_model_file",
    "iter_batches",
    "load_engine",
    "open_runtime",
    "predict_files",
    "read_onnx_metadata",
    "read_sidecar",
    "write_onnx",
]
