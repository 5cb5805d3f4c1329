"""An export that fails its parity check leaves no model file behind for predict to pick up."""

from __future__ import annotations

import json

import pytest

from transferkit.cli import main
from transferkit.export import Tolerance, export_run
from transferkit.export.errors import ExportError

pytest.importorskip("onnxruntime")

UNREACHABLE = Tolerance(min_top1_agreement=1.01, max_abs_diff=None)  # no file can agree with more than 100%


def test_an_onnx_file_outside_tolerance_is_not_kept(full_run, tmp_path, monkeypatch):
    out = tmp_path / "export"
    export_run(full_run.run_dir, "onnx", out_dir=out)
    assert (out / "model.onnx").is_file()  # an earlier export that passed
    monkeypatch.setattr("transferkit.export.exporter.FP32_TOLERANCE", UNREACHABLE)
    with pytest.raises(ExportError) as failure:
        export_run(full_run.run_dir, "onnx", out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["parity.json", "preprocessing.json"]  # no temporary either
    assert "outside parity tolerance: model.onnx" in str(failure.value) and "not kept: model.onnx" in str(failure.value)
    (entry,) = json.loads((out / "parity.json").read_text())
    assert entry["file"] == str(out / "model.onnx") and not entry["passed"]


def test_a_failed_int8_mnn_is_removed_and_predict_cannot_use_it(full_run, val_folder, tmp_path, capsys):
    pytest.importorskip("MNN")
    out = tmp_path / "export"
    argv = ["export", str(full_run.run_dir), "--format", "mnn", "--int8", "--out", str(out)]
    assert main([*argv, "--int8-min-agreement", "1.01"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["model.mnn", "parity.json", "preprocessing.json"]
    assert "not kept: model.int8.mnn" in capsys.readouterr().err.replace("\n", "")
    image = str(next((val_folder / "red").glob("*.png")))
    assert main(["predict", str(out / "model.int8.mnn"), image]) == 2
    assert "model file not found" in capsys.readouterr().err.replace("\n", "")
    assert main(["predict", str(out / "model.mnn"), image, "--json"]) == 0  # the fp32 file passed and stays
