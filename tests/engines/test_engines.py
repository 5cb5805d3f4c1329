"""The engine layer: sidecars, the runtime registry, the one ONNX writer, and its place below train and export."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.data import Preprocessing
from transferkit.engines import (
    ENGINE_SUFFIXES,
    EngineError,
    MissingPackageError,
    Sidecar,
    open_runtime,
    read_onnx_metadata,
    read_sidecar,
    write_onnx,
)
from transferkit.engines.runtimes import register_runtime

PRE = Preprocessing(image_size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), interpolation="bicubic", crop_pct=0.9)
ENGINES_SRC = Path(__file__).resolve().parents[2] / "src" / "transferkit" / "engines"


def test_the_sidecar_keeps_the_exported_json_form():
    sidecar = Sidecar(PRE, ("cat", "dog"), "tiny_resnet")
    values = sidecar.to_dict()
    assert list(values) == ["image_size", "mean", "std", "interpolation", "crop_pct", "classes", "backbone"]
    assert values["classes"] == ["cat", "dog"] and values["mean"] == [0.5, 0.4, 0.3]
    assert Sidecar.from_dict(json.loads(json.dumps(values))) == sidecar
    cut = Sidecar(PRE, ("a",), "model.onnx@pool", ("image", "logits"))
    assert cut.to_dict()["io_names"] == ["image", "logits"] and Sidecar.from_dict(cut.to_dict()) == cut


def test_a_sidecar_without_its_keys_or_with_bad_values_is_refused(tmp_path):
    model = tmp_path / "model.mnn"
    model.write_bytes(b"\0" * 16)
    with pytest.raises(EngineError, match="no preprocessing found"):
        read_sidecar(model)
    (tmp_path / "preprocessing.json").write_text(json.dumps({"image_size": 8, "mean": [0.5] * 3}))
    with pytest.raises(EngineError, match="preprocessing lacks std, interpolation, crop_pct, classes, backbone"):
        read_sidecar(model)
    bad = {**Sidecar(PRE, ("a",), "x").to_dict(), "std": [0.0, 1.0, 1.0]}
    (tmp_path / "preprocessing.json").write_text(json.dumps(bad))
    with pytest.raises(EngineError, match="std must be positive"):
        read_sidecar(model)


def test_runtimes_are_registered_by_suffix_once():
    assert ENGINE_SUFFIXES == {".onnx": "onnx", ".mnn": "mnn", ".pt": "torchscript", ".pts": "torchscript"}
    with pytest.raises(ValueError, match="registered twice"):
        register_runtime("onnx2", ".onnx")(type("Again", (), {}))
    assert ".onnx" in ENGINE_SUFFIXES and "onnx2" not in ENGINE_SUFFIXES.values()
    with pytest.raises(EngineError, match="unknown model file type"):
        open_runtime("model.tflite")


def test_a_missing_package_is_an_import_error_and_a_user_error():
    assert issubclass(MissingPackageError, ImportError) and issubclass(MissingPackageError, ValueError)


def test_write_onnx_gives_a_dynamic_batch_file_that_computes_the_module(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    path = write_onnx(net, tmp_path / "net.onnx", 8, output_name="features")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]  # written under a temporary name first
    runtime = open_runtime(path)
    for n in (1, 3):
        batch = torch.randn(n, 3, 8, 8)
        with torch.inference_mode():
            expected = net(batch).numpy()
        np.testing.assert_allclose(runtime(batch.numpy()), expected, atol=1e-5)


def test_write_onnx_stores_the_metadata(tmp_path):
    pytest.importorskip("onnx")
    sidecar = Sidecar(PRE, ("a", "b"), "tiny")
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, 2))
    path = write_onnx(net, tmp_path / "m.onnx", 8, metadata=sidecar.to_dict())
    assert read_onnx_metadata(path) == sidecar.to_dict()
    assert read_sidecar(path) == sidecar  # the file alone is enough


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_the_engine_layer_is_below_train_and_export():
    for path in ENGINES_SRC.glob("*.py"):
        above = {m for m in _imported_modules(path) if m.startswith(("transferkit.train", "transferkit.export"))}
        assert not above, f"{path.name} imports {above}"
