"""Deployment exports (ONNX, MNN, TorchScript) with parity checks, and linear-probe training on a model file cut
at a named node. Running exported files is the engine layer's (`transferkit.engines`); its loading and prediction
functions are also importable from here."""

from transferkit.engines import ENGINE_SUFFIXES, Engine, is_model_file, load_engine, predict_files
from transferkit.export.errors import ExportError
from transferkit.export.exporter import FORMATS, ExportResult, export_run
from transferkit.export.parity import FP32_TOLERANCE, INT8_TOLERANCE, ParityReport, Tolerance

__all__ = [
    "ENGINE_SUFFIXES",
    "FORMATS",
    "FP32_TOLERANCE",
    "INT8_TOLERANCE",
    "Engine",
    "ExportError",
    "ExportResult",
    "ParityReport",
    "Tolerance",
    "export_run",
    "is_model_file",
    "load_engine",
    "predict_files",
]
