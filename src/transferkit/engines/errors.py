"""The errors of the engine layer: a model file that cannot be used, an inference package that is missing."""

from __future__ import annotations

__all__ = ["EngineError", "MissingPackageError"]


class EngineError(ValueError):
    """A model file that is missing, unreadable, lacks its preprocessing, or gives unusable outputs."""


class MissingPackageError(EngineError, ImportError):
    """An optional inference package (onnx, onnxruntime, MNN) is not installed; the message says what to install."""
