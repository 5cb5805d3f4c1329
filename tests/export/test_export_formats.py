"""Export a trained tiny_resnet run to every format: files, embedded preprocessing, parity, prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferkit.data import DataError
from transferkit.engines import read_onnx_metadata
from transferkit.evaluate import predict_images
from transferkit.export import ExportError, export_run, load_engine

pytest.importorskip("onnxruntime")

FP32 = ("onnx", "torchscript", "mnn")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "mnn": ".mnn"}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, full_run):
    """`full_run` exported to each fp32 format (MNN also as int8), each into its own folder."""
    if not _has_mnn():
        pytest.skip("MNN is not installed")
    out = tmp_path_factory.mktemp("formats")
    return {fmt: export_run(full_run.run_dir, fmt, out_dir=out / fmt, int8=fmt == "mnn") for fmt in FP32}


def _has_mnn() -> bool:
    try:
        import MNN  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("fmt", FP32)
def test_export_writes_model_sidecar_and_parity(exports, full_run, fmt):
    result = exports[fmt]
    model = result.out_dir / f"model{SUFFIX[fmt]}"
    assert model.is_file() and model.stat().st_size > 100_000  # tiny_resnet has 373k float32 weights
    sidecar = json.loads((result.out_dir / "preprocessing.json").read_text())
    assert sidecar["classes"] == ["blue", "green", "red"]
    assert sidecar["image_size"] == 32 and len(sidecar["mean"]) == 3 and len(sidecar["std"]) == 3
    assert sidecar["interpolation"] and sidecar["backbone"] == "tiny_resnet"

    parity = json.loads((result.out_dir / "parity.json").read_text())
    fp32 = next(p for p in parity if p["precision"] == "fp32")
    # The parity images are the run's 24 validation images, re-created from the run directory.
    assert fp32["n_images"] == 24 and "validation split" in fp32["images_from"]
    assert fp32["passed"] and fp32["top1_agreement"] == 1.0
    assert fp32["max_abs_diff"] < 1e-3
    assert fp32["images_per_s"] > 0 and fp32["file_bytes"] == model.stat().st_size


@pytest.mark.parametrize("fmt", FP32)
def test_predict_from_exported_file_matches_the_run(exports, full_run, val_folder, fmt):
    images = sorted(val_folder.glob("*/*.png"))[::4]
    model = exports[fmt].out_dir / f"model{SUFFIX[fmt]}"
    from_file = predict_images(model, images, top_k=3)
    from_run = predict_images(full_run.run_dir, images, top_k=3)
    for a, b in zip(from_file, from_run, strict=True):
        assert a["path"] == b["path"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose(
            [t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-4
        )


def test_onnx_file_carries_preprocessing_and_a_dynamic_batch(exports):
    path = exports["onnx"].out_dir / "model.onnx"
    meta = read_onnx_metadata(path)
    sidecar = json.loads((exports["onnx"].out_dir / "preprocessing.json").read_text())
    assert meta == sidecar  # the file alone is enough to preprocess images for it
    engine = load_engine(path)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        assert engine(rng.normal(size=(batch, 3, 32, 32)).astype(np.float32)).shape == (batch, 3)


def test_mnn_int8_is_smaller_and_its_agreement_is_reported(exports):
    result = exports["mnn"]
    fp32, int8 = result.out_dir / "model.mnn", result.out_dir / "model.int8.mnn"
    assert result.files == [fp32, int8]
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # int8 weights: about a quarter of fp32
    report = next(p for p in result.parity if p.precision == "int8")
    assert report.file == str(int8) and report.n_images == 24
    assert 0.0 <= report.top1_agreement <= 1.0 and report.max_abs_diff > 0  # quantisation moves the logits
    assert report.tolerance["max_abs_diff"] is None and report.passed == (report.top1_agreement >= 0.9)
    # The int8 file runs by itself, with the sidecar beside it.
    images = np.zeros((2, 3, 32, 32), np.float32)
    assert load_engine(int8)(images).shape == (2, 3)


def test_parity_json_keeps_every_format_exported_to_one_folder(tmp_path, full_run):
    export_run(full_run.run_dir, "onnx", out_dir=tmp_path)
    export_run(full_run.run_dir, "torchscript", out_dir=tmp_path)
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert sorted(p["format"] for p in parity) == ["onnx", "torchscript"]


def test_export_outside_tolerance_is_an_error(tmp_path, full_run, monkeypatch):
    """An engine that swaps two classes' logits must be refused, with parity.json saying why."""
    import transferkit.export.exporter as exporter

    real = exporter.load_engine
    monkeypatch.setattr(exporter, "load_engine", lambda path, **kwargs: _SwappedClasses(real(path, **kwargs)))
    with pytest.raises(ExportError, match="outside parity tolerance") as caught:
        export_run(full_run.run_dir, "onnx", out_dir=tmp_path)
    assert "model.onnx" in str(caught.value) and "parity.json" in str(caught.value)
    (entry,) = json.loads((tmp_path / "parity.json").read_text())
    assert not entry["passed"] and entry["top1_agreement"] < 0.995 and entry["max_abs_diff"] > 1e-3


class _SwappedClasses:
    """An engine whose first two logits trade places: a broken export that still runs."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.engine(batch)[:, [1, 0, 2]]


def test_parity_check_data_when_the_run_data_is_gone(tmp_path, full_run, val_folder):
    import shutil

    run = tmp_path / "moved-run"
    shutil.copytree(full_run.run_dir, run, ignore=shutil.ignore_patterns("export"))
    described = json.loads((run / "data.json").read_text())
    described["train"]["name"] = described["val"]["name"] = str(tmp_path / "gone")
    (run / "data.json").write_text(json.dumps(described))
    with pytest.raises(DataError, match="--check-data") as caught:
        export_run(run, "onnx")
    assert str(run) in str(caught.value)
    result = export_run(run, "onnx", check_data=val_folder)
    assert result.parity[0].n_images == 24 and result.parity[0].images_from == str(val_folder)


def test_bad_format_and_int8_without_mnn_are_errors(full_run):
    with pytest.raises(ExportError, match="unknown export format 'tflite'.*onnx, mnn, torchscript"):
        export_run(full_run.run_dir, "tflite")
    with pytest.raises(ExportError, match="int8.*mnn only"):
        export_run(full_run.run_dir, "onnx", int8=True)
