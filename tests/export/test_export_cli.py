"""`transferkit export` and `transferkit predict MODEL_FILE` from the command line, errors included."""

from __future__ import annotations

import json

import pytest

from transferkit.cli import main

pytest.importorskip("onnxruntime")


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_then_predict_from_the_file(tmp_path, capsys, full_run, val_folder):
    out_dir = tmp_path / "exported"
    code, out, err = _run(capsys, "export", full_run.run_dir, "--format", "torchscript", "--out", out_dir)
    assert code == 0, out + err
    assert "top-1 agreement 100.00% on 24 images" in err and "-> ok" in err  # the parity check reports on stderr
    assert (out_dir / "model.pt").is_file() and (out_dir / "parity.json").is_file()

    images = sorted(val_folder.glob("*/*.png"))[::6]
    code, out, _ = _run(capsys, "predict", out_dir / "model.pt", *images, "--json")
    assert code == 0
    from_file = json.loads(out)
    code, out, _ = _run(capsys, "predict", full_run.run_dir, *images, "--json")
    from_run = json.loads(out)
    assert [p["top"][0]["class"] for p in from_file] == [p["top"][0]["class"] for p in from_run]


def test_predict_json_from_mnn_is_clean_json(tmp_path, full_run, val_folder):
    """MNN prints a CPU feature line to the process's stdout on import; it must not reach --json output."""
    import subprocess
    import sys

    pytest.importorskip("MNN")
    main(["export", str(full_run.run_dir), "--format", "mnn", "--out", str(tmp_path)])
    image = sorted(val_folder.glob("red/*.png"))[0]
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit", "predict", str(tmp_path / "model.mnn"), str(image), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (prediction,) = json.loads(proc.stdout)
    assert prediction["top"][0]["class"] == "red"


def test_export_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    code, out, err = _run(capsys, "export", missing, "--format", "onnx")
    assert code == 2
    assert "error:" in err and str(missing) in err and "Traceback" not in out + err


def test_bad_format_is_a_usage_error(capsys, full_run):
    with pytest.raises(SystemExit) as caught:
        main(["export", str(full_run.run_dir), "--format", "tflite"])
    assert caught.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_calib_without_int8_and_int8_for_onnx_are_errors(capsys, full_run, image_folder):
    code, _, err = _run(capsys, "export", full_run.run_dir, "--format", "mnn", "--calib", image_folder)
    assert code == 2 and "--calib is only used with --int8" in err
    code, _, err = _run(capsys, "export", full_run.run_dir, "--format", "onnx", "--int8")
    assert code == 2 and "int8" in err and "mnn only" in err


def test_predict_from_unusable_model_files_names_them(tmp_path, capsys, val_folder):
    image = sorted(val_folder.glob("red/*.png"))[0]
    missing = tmp_path / "model.onnx"
    code, _, err = _run(capsys, "predict", missing, image)
    assert code == 2 and str(missing) in err and "not found" in err

    garbage = tmp_path / "garbage" / "model.onnx"
    garbage.parent.mkdir()
    garbage.write_bytes(b"this is not a model")
    code, _, err = _run(capsys, "predict", garbage, image)
    assert code == 2 and str(garbage) in err

    bare = tmp_path / "bare" / "model.mnn"
    bare.parent.mkdir()
    bare.write_bytes(b"\0" * 64)
    code, _, err = _run(capsys, "predict", bare, image)
    assert code == 2 and "preprocessing" in err and str(bare.parent / "preprocessing.json") in err


def test_int8_below_the_required_agreement_fails_the_export(tmp_path, capsys, full_run):
    pytest.importorskip("MNN")
    argv = ["export", full_run.run_dir, "--format", "mnn", "--int8", "--out", tmp_path, "--int8-min-agreement", "1.01"]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "outside parity tolerance" in err and "model.int8.mnn" in err and "need 101.0%" in err
    entries = {e["precision"]: e for e in json.loads((tmp_path / "parity.json").read_text())}
    assert entries["fp32"]["passed"] and not entries["int8"]["passed"]
