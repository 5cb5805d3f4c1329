"""An unreadable test image is found before training and skipped and counted, in train --test and in evaluate."""

from __future__ import annotations

import json
import shutil

from transferkit.cli import main


def _one_line(text: str) -> str:
    """Console output with its line wrapping undone (the width, and so the breaks, depend on the paths)."""
    return " ".join(text.split())


def _test_folder(val_folder, tmp_path):
    test = shutil.copytree(val_folder, tmp_path / "test")
    (test / "red" / "red_03.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return test


def test_train_checks_the_test_set_first_and_skips_an_unreadable_image(image_folder, val_folder, tmp_path, capsys):
    test = _test_folder(val_folder, tmp_path)
    code = main(
        ["train", str(image_folder), "--backbone", "tiny_resnet", "--strategy", "full", "--image-size", "32",
         "--epochs", "1", "--out", str(tmp_path), "--name", "run", "--test", str(test)]
    )  # fmt: skip
    err = _one_line(capsys.readouterr().err)
    assert code == 0, err
    warned, trained = err.index("test: skipping"), err.index("epoch 1")
    assert warned < trained and "red_03.png" in "".join(err[warned:trained].split()), (
        "the test set is read before training"
    )
    assert "on 23 images (1 unreadable skipped)" in err
    assert json.loads((tmp_path / "run-001" / "summary.json").read_text())["test_skipped_images"] == 1

    assert main(["evaluate", str(tmp_path / "run-001"), str(test), "--json", "--out", str(tmp_path / "eval")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 23
    assert "skipping" in _one_line(captured.err) and "1 of 24 images could not be read" in _one_line(captured.err)
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert [s["path"] for s in record["skipped_images"]] == [str(test / "red" / "red_03.png")]
