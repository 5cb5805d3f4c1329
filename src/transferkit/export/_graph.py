"""ONNX graph surgery: list the nodes a model can be cut at, cut it there, and append a linear head."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transferkit.engines.onnx_files import OUTPUT_NAME, import_onnx
from transferkit.export.errors import ExportError

__all__ = ["append_linear_head", "cut_candidates", "cut_graph", "graph_inputs", "load_model", "resolve_cut"]

# Ops whose output is usually a pooled feature vector: the natural places to cut a classifier.
_POOL_OPS = ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Flatten", "AveragePool")
_LAST_NODES = 5


def load_model(path: str | Path):
    """An ONNX ModelProto with inferred shapes.

    Raises:
        ExportError: The file is missing or not an ONNX model.
    """
    onnx = import_onnx()
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: model file not found")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and onnx's own errors
        raise ExportError(f"{path}: not an ONNX model ({exc})") from exc
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph whose shapes cannot be inferred can still be cut and run
        return model


def graph_inputs(model) -> list:
    """The graph's real inputs (older exporters also list every initializer as an input)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def cut_candidates(model) -> list[str]:
    """Descriptions (``name (Op) -> output [shape]``) of pooling-like nodes and the last few nodes."""
    shapes = _value_shapes(model)
    nodes = list(model.graph.node)
    picked = [n for n in nodes if n.op_type in _POOL_OPS]
    picked += [n for n in nodes[-_LAST_NODES:] if n not in picked]
    lines = []
    for node in picked:
        out = node.output[0]
        shape = shapes.get(out)
        lines.append(f"{node.name or '<unnamed>'} ({node.op_type}) -> {out}" + (f" {shape}" if shape else ""))
    return lines


def resolve_cut(model, cut_at: str | None, source: str = "model") -> str:
    """The tensor to cut at: the first output of the node named `cut_at`, or the tensor named `cut_at`.

    Raises:
        ExportError: `cut_at` is missing or names no node or tensor; the message lists candidates.
    """
    if cut_at:
        for node in model.graph.node:
            if node.name == cut_at:
                return node.output[0]
        for node in model.graph.node:
            if cut_at in node.output:
                return cut_at
    listing = "\n  ".join(cut_candidates(model)) or "(the graph has no nodes)"
    problem = f"node {cut_at!r} is not in {source}" if cut_at else f"--cut-at NODE is required to cut {source}"
    raise ExportError(f"{problem}. Candidate nodes (name (op) -> output [shape]):\n  {listing}")


def cut_graph(model, output: str):
    """The sub-graph from the model's inputs to `output`, which becomes its only output."""
    onnx = import_onnx()
    inputs = [i.name for i in graph_inputs(model)]
    try:
        return onnx.utils.Extractor(model).extract_model(inputs, [output])
    except Exception as exc:  # Extractor raises plain Exceptions for unreachable tensors
        raise ExportError(f"cannot cut the graph at {output!r}: {exc}") from exc


def append_linear_head(cut, feature: str, weight: np.ndarray, bias: np.ndarray):
    """`cut` followed by Flatten and a Gemm layer (``logits = flatten(feature) @ weight.T + bias``).

    The output is ``logits`` of shape (batch, classes); the batch axis stays dynamic.
    """
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(cut)
    graph = model.graph
    prefix = "transferkit_head"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.ascontiguousarray(weight, np.float32), f"{prefix}.weight"),
            numpy_helper.from_array(np.ascontiguousarray(bias, np.float32), f"{prefix}.bias"),
        ]
    )
    flat = f"{prefix}.flat"
    graph.node.extend(
        [
            helper.make_node("Flatten", [feature], [flat], name=f"{prefix}/Flatten", axis=1),
            helper.make_node(
                "Gemm", [flat, f"{prefix}.weight", f"{prefix}.bias"], [OUTPUT_NAME], name=f"{prefix}/Gemm", transB=1
            ),
        ]
    )
    batch = graph_inputs(model)[0].type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_value if batch.dim_value else (batch.dim_param or "batch")
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch_dim, weight.shape[0]]))
    onnx.checker.check_model(model)
    return model


def _value_shapes(model) -> dict[str, list]:
    shapes = {}
    for info in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.dim_value else (d.dim_param or "?") for d in dims]
    return shapes
