"""ONNX files: the one place a torch module is written as ONNX, and the metadata that carries its preprocessing."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from transferkit.engines._imports import optional_import
from transferkit.engines.errors import EngineError

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "import_onnx",
    "read_onnx_metadata",
    "write_onnx",
    "write_onnx_metadata",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17
_META_PREFIX = "transferkit."


def write_onnx(
    module: nn.Module,
    path: str | Path,
    image_size: int,
    *,
    output_name: str = OUTPUT_NAME,
    metadata: dict | None = None,
    opset: int = OPSET,
) -> Path:
    """Write `module` (run in eval mode on the CPU) as ONNX: ``input`` (N, 3, S, S) to `output_name` (N, ...).

    The batch axis is dynamic; the spatial size is `image_size`. The file appears under its name only once it
    is complete, so a reader never sees half a file.

    Args:
        module: The network; the caller's module is moved to the CPU and put in eval mode.
        path: The file to write.
        image_size: Input side in pixels.
        output_name: Name of the graph's output.
        metadata: Stored in the file's ``metadata_props`` as ``transferkit.<key>`` (JSON values) and checked with
            onnx's checker; needs the onnx package. None writes the graph alone (torch's exporter needs no onnx).
        opset: ONNX opset.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    module = module.eval().cpu()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is the one that needs no extra packages (the dynamo
        # exporter needs onnxscript); torch warns that it is no longer the default.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(2, 3, image_size, image_size),),
            str(tmp),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    if metadata is not None:
        onnx = import_onnx()
        proto = onnx.load(str(tmp))
        write_onnx_metadata(proto, metadata)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return path


def write_onnx_metadata(proto, metadata: dict) -> None:
    """Replace the transferkit entries of an ONNX ModelProto's metadata_props with `metadata`."""
    keep = [p for p in proto.metadata_props if not p.key.startswith(_META_PREFIX)]
    del proto.metadata_props[:]
    for prop in keep:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in metadata.items():
        proto.metadata_props.add(key=_META_PREFIX + key, value=json.dumps(value))


def read_onnx_metadata(path: str | Path) -> dict:
    """The transferkit entries of an ONNX file's metadata_props (empty for foreign files).

    Raises:
        EngineError: The file is not an ONNX model.
    """
    onnx = import_onnx()
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own types
        raise EngineError(f"{path}: not an ONNX model ({exc})") from exc
    meta = {}
    for prop in proto.metadata_props:
        if prop.key.startswith(_META_PREFIX):
            try:
                meta[prop.key.removeprefix(_META_PREFIX)] = json.loads(prop.value)
            except json.JSONDecodeError:
                meta[prop.key.removeprefix(_META_PREFIX)] = prop.value
    return meta


def import_onnx():
    """The onnx package.

    Raises:
        MissingPackageError: It is not installed.
    """
    return optional_import("onnx")
