"""Resuming on other images with the same classes is refused (unless --allow-data-change); a test set that is the
training data is warned about in train and evaluate."""

from __future__ import annotations

import json
import shutil

from transferkit.cli import main


def _one_line(text: str) -> str:
    """Console output with its line wrapping undone (the width, and so the breaks, depend on the paths)."""
    return " ".join(text.split())


def _train(data, out, *extra: str) -> int:
    return main(
        ["train", str(data), "--backbone", "tiny_resnet", "--strategy", "full", "--image-size", "32",
         "--batch-size", "8", "--out", str(out), "--name", "run", *extra]
    )  # fmt: skip


def test_resuming_on_other_images_is_refused_unless_allowed(image_folder, tmp_path, capsys):
    data = shutil.copytree(image_folder, tmp_path / "data")
    assert _train(data, tmp_path, "--epochs", "1") == 0
    # Same classes, different images: one image of each class replaced by another of its class.
    for cls in ("blue", "green", "red"):
        shutil.copy(data / cls / f"{cls}_01.png", data / cls / f"{cls}_00.png")
    capsys.readouterr()
    assert _train(data, tmp_path, "--epochs", "2", "--resume", "auto") == 2
    err = _one_line(capsys.readouterr().err)
    assert "cannot resume" in err and "images differ from the interrupted run's" in err, err
    assert "--allow-data-change" in err
    rows = (tmp_path / "run-001" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1], "a refused resume trains nothing"

    assert _train(data, tmp_path, "--epochs", "2", "--resume", "auto", "--allow-data-change") == 0
    assert "best epoch so far was picked on the old validation set" in _one_line(capsys.readouterr().err)
    rows = (tmp_path / "run-001" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_a_test_set_that_is_the_training_data_is_warned_about(image_folder, tmp_path, capsys):
    # The same images under another folder name: only their contents tell.
    copy = shutil.copytree(image_folder, tmp_path / "test-copy")
    assert _train(image_folder, tmp_path, "--epochs", "1", "--test", str(copy)) == 0
    err = _one_line(capsys.readouterr().err)
    assert "of 36 test image(s) are also in the run's training data (same content)" in err, err
    assert "are also in the run's validation data" in err
    assert main(["evaluate", str(tmp_path / "run-001"), str(copy), "--json"]) == 0
    captured = capsys.readouterr()
    assert "28 of 36 evaluation image(s) are also in the run's training data" in _one_line(captured.err), _one_line(
        captured.err
    )
    assert "8 of 36 evaluation image(s) are also in the run's validation data" in _one_line(captured.err)
    assert json.loads(captured.out)["n"] == 36  # warned, still evaluated
