"""ONNX export of a classifier: a dynamic batch axis and the sidecar (preprocessing, classes) in the file's metadata."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from transferkit.engines import Sidecar
from transferkit.engines.onnx_files import INPUT_NAME, OPSET, OUTPUT_NAME, write_onnx

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "export_onnx"]


def export_onnx(model: nn.Module, path: str | Path, sidecar: Sidecar, *, opset: int = OPSET) -> Path:
    """Write `model` (eval mode, CPU) as ONNX: input ``input`` (N, 3, S, S), output ``logits`` (N, classes).

    The batch axis is dynamic; the spatial size is the preprocessing's ``image_size``. Every sidecar key is stored
    in the file's ``metadata_props`` as ``transferkit.<key>`` (JSON values), so the file alone is enough to
    preprocess images for it.

    Args:
        model: The classifier.
        path: The file to write.
        sidecar: Its preprocessing, classes and backbone.
        opset: ONNX opset.
    """
    size = sidecar.preprocessing.image_size
    return write_onnx(model, path, size, output_name=OUTPUT_NAME, metadata=sidecar.to_dict(), opset=opset)
