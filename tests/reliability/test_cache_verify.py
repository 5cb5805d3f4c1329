"""Two same-size images swapped with their modification times kept: the default cache key (path, size, time) cannot
tell, so `--cache-verify hash` checks the files' contents and re-extracts."""

from __future__ import annotations

import os
import shutil

from PIL import Image

from transferkit.cli import main


def _one_line(text: str) -> str:
    """Console output with its line wrapping undone (the width, and so the breaks, depend on the paths)."""
    return " ".join(text.split())


def _swap_keeping_times(a, b) -> None:
    times = [(p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (a, b)]
    tmp = a.with_suffix(".tmp")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    for path, (atime, mtime) in zip((a, b), times, strict=True):
        os.utime(path, ns=(atime, mtime))


def test_swapped_images_are_found_by_content_hash(image_folder, tmp_path, capsys):
    data = tmp_path / "data"
    for cls in ("blue", "green", "red"):  # uncompressed BMPs: same size bytes for every image of one size
        (data / cls).mkdir(parents=True)
        for png in sorted((image_folder / cls).glob("*.png")):
            Image.open(png).save(data / cls / f"{png.stem}.bmp")
    a, b = data / "red" / "red_00.bmp", data / "blue" / "blue_00.bmp"
    assert a.stat().st_size == b.stat().st_size
    argv = [
        "train", str(data), "--backbone", "tiny_resnet", "--strategy", "linear-probe", "--image-size", "32",
        "--epochs", "1", "--no-decode-cache", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path),
    ]  # fmt: skip
    decoded = [*argv[:-2], "--strategy", "full", "--decode-cache", "--cache-verify", "hash", "--out", str(tmp_path)]
    for verify in ("stat", "hash"):
        assert main([*argv, "--cache-verify", verify, "--name", f"first-{verify}"]) == 0
    assert main([*decoded, "--name", "first-decoded"]) == 0
    capsys.readouterr()
    _swap_keeping_times(a, b)

    assert main([*argv, "--name", "default"]) == 0
    assert "feature cache hit" in _one_line(capsys.readouterr().err)  # the documented limit of the default key
    assert main([*argv, "--cache-verify", "hash", "--name", "hashed"]) == 0
    err = _one_line(capsys.readouterr().err)
    assert "feature cache rebuilt" in err and "images changed" in err, err
    assert main([*decoded, "--name", "decoded"]) == 0
    assert "decoded-image cache rebuilt" in _one_line(capsys.readouterr().err)
    shutil.rmtree(tmp_path / "cache")
