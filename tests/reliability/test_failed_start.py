"""A start that fails in its setup leaves no run folder, and `--resume auto` picks the newest run it can resume."""

from __future__ import annotations

import json

from transferkit.cli import main


def _one_line(text: str) -> str:
    """Console output with its line wrapping undone (the width, and so the breaks, depend on the paths)."""
    return " ".join(text.split())


def _train(image_folder, out, *extra: str) -> int:
    return main(
        ["train", str(image_folder), "--backbone", "tiny_resnet", "--strategy", "full", "--image-size", "32",
         "--batch-size", "8", "--out", str(out), "--name", "pets", *extra]
    )  # fmt: skip


def test_failed_starts_leave_no_folder_for_resume_auto_to_pick(image_folder, tmp_path, capsys):
    assert _train(image_folder, tmp_path, "--epochs", "1") == 0
    assert (tmp_path / "pets-001" / "last.state.pt").exists()
    garbage = tmp_path / "bad.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    assert _train(image_folder, tmp_path, "--epochs", "2", "--weights", str(garbage)) == 2  # bad --weights
    assert _train(image_folder, tmp_path, "--epochs", "2", "--val-fraction", "0.95") == 2  # a split error
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["pets-001"]

    # A folder without a saved state (as a run killed in its setup leaves, or an older version left) is passed over.
    (tmp_path / "pets-002").mkdir()
    capsys.readouterr()
    assert _train(image_folder, tmp_path, "--epochs", "2", "--resume", "auto") == 0
    err = _one_line(capsys.readouterr().err)
    assert "resuming" in err and "pets-001" in err and "pets-002 without one" in err, err
    rows = [json.loads(line) for line in (tmp_path / "pets-001" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert not any((tmp_path / "pets-002").iterdir())
