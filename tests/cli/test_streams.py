"""stdout carries results only; diagnostics go to stderr; quiet mode keeps errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import transferkit
from transferkit.cli import main

TINY = ["--backbone", "tiny_resnet", "--epochs", "1", "--image-size", "32", "--batch-size", "8"]


def _cli(*argv, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "transferkit", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_predict_json_stdout_is_json_when_an_image_is_bad(full_run, val_folder, tmp_path):
    good = sorted(val_folder.glob("red/*.png"))[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    proc = _cli("predict", full_run.run_dir, good[0], bad, good[1], "--json")
    assert proc.returncode == 1, proc.stderr  # some images could not be read
    predictions = json.loads(proc.stdout)  # the whole of stdout, nothing else
    assert [p["path"] for p in predictions] == [str(good[0]), str(bad), str(good[1])]
    assert "top" in predictions[0] and "top" in predictions[2]
    assert "broken.png" in predictions[1]["error"] and "top" not in predictions[1]
    assert "error:" in proc.stderr and "broken.png" in proc.stderr


def test_predict_of_only_bad_images_exits_2(full_run, tmp_path, capsys):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    assert main(["predict", str(full_run.run_dir), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "empty.jpg: empty file" in err


def test_training_says_everything_on_stderr_and_quiet_silences_it(image_folder, tmp_path, capsys):
    assert main(["train", str(image_folder), *TINY, "--out", str(tmp_path), "--name", "loud"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "best val acc" in err

    assert main(["-q", "train", str(image_folder), *TINY, "--out", str(tmp_path), "--name", "hushed"]) == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "hushed-001" / "best.safetensors").is_file()

    # After the command, the library speaks again: quiet was for that command only.
    assert main(["train", str(image_folder), *TINY, "--out", str(tmp_path), "--name", "again", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["evaluate", str(tmp_path / "again-001"), str(image_folder)]) == 0
    out, err = capsys.readouterr()
    assert "macro avg" in out and "confusion matrix:" in out


def test_quiet_mode_keeps_errors(tmp_path, image_folder, capsys):
    assert main(["evaluate", str(tmp_path / "no-run"), str(image_folder), "-q"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "error:" in err and "no-run" in err


def test_library_quiet_switch(image_folder, tmp_path, capsys):
    transferkit.set_verbosity("quiet")
    try:
        from transferkit import TrainConfig, from_folder, train_run

        config = TrainConfig(backbone="tiny_resnet", strategy="full", epochs=1, image_size=32, batch_size=8)
        train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
        assert capsys.readouterr() == ("", "")
    finally:
        transferkit.set_verbosity("normal")
    with pytest.raises(ValueError, match="'normal' or 'quiet'"):
        transferkit.set_verbosity("loud")


def test_quiet_environment_variable(tmp_path):
    proc = _cli("evaluate", tmp_path / "no-run", tmp_path, env={"TRANSFERKIT_QUIET": "1"})
    assert proc.returncode == 2 and proc.stdout == "" and "error:" in proc.stderr
