"""ONNX export with a dynamic batch axis and the preprocessing in the file's metadata."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from transferkit.export.errors import ExportError

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "export_onnx", "read_onnx_metadata", "write_onnx_metadata"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17
_META_PREFIX = "transferkit."


def export_onnx(model: nn.Module, path: str | Path, sidecar: dict, *, opset: int = OPSET) -> Path:
    """Write `model` (eval mode, CPU) as ONNX: input ``input`` (N, 3, S, S), output ``logits`` (N, classes).

    The batch axis is dynamic; the spatial size is the sidecar's ``image_size``. Every sidecar key is stored
    in the file's ``metadata_props`` as ``transferkit.<key>`` (JSON values), so the file alone is enough to
    preprocess images for it.

    Args:
        model: The classifier.
        path: The file to write.
        sidecar: The preprocessing: image_size, mean, std, interpolation, crop_pct, classes, backbone.
        opset: ONNX opset.
    """
    onnx = _import_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = int(sidecar["image_size"])
    model = model.eval().cpu()
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings():
        # The TorchScript-based exporter is the one that needs no extra packages (the dynamo
        # exporter needs onnxscript); torch warns that it is no longer the default.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    write_onnx_metadata(proto, sidecar)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def write_onnx_metadata(proto, sidecar: dict) -> None:
    """Replace the transferkit entries of an ONNX ModelProto's metadata_props with `sidecar`."""
    keep = [p for p in proto.metadata_props if not p.key.startswith(_META_PREFIX)]
    del proto.metadata_props[:]
    for prop in keep:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in sidecar.items():
        proto.metadata_props.add(key=_META_PREFIX + key, value=json.dumps(value))


def read_onnx_metadata(path: str | Path) -> dict:
    """The transferkit entries of an ONNX file's metadata_props (empty for foreign files).

    Raises:
        ExportError: The file is not an ONNX model.
    """
    onnx = _import_onnx()
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own types
        raise ExportError(f"{path}: not an ONNX model ({exc})") from exc
    meta = {}
    for prop in proto.metadata_props:
        if prop.key.startswith(_META_PREFIX):
            try:
                meta[prop.key.removeprefix(_META_PREFIX)] = json.loads(prop.value)
            except json.JSONDecodeError:
                meta[prop.key.removeprefix(_META_PREFIX)] = prop.value
    return meta


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("onnx is not installed; install it with: pip install 'transferkit[export]'") from exc
    return onnx
