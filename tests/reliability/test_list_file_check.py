"""`transferkit check` reports every bad line of a list file, not only the first."""

from __future__ import annotations

import json

import pytest

from transferkit.cli import main
from transferkit.data import DataError, from_folder, from_list


@pytest.fixture
def bad_list(list_file, tmp_path):
    """A validation list of the fixture's images with four bad lines among the good ones."""
    good = [line for line in list_file.read_text().splitlines() if not line.startswith("#")]
    bad = [
        "red/red_00.png",  # no label
        "red/red_01.png purple",  # not one of the training classes
        "blue/missing.png blue",  # no such file
        "green/green_00.png 7",  # class index out of range for 3 classes
    ]
    path = tmp_path / "val.txt"
    path.write_text("\n".join(good[:4] + bad + good[4:]) + "\n")
    return path, [5, 6, 7, 8]  # the bad lines' numbers


def test_check_lists_every_bad_line(bad_list, list_file, image_folder, capsys):
    path, bad_lines = bad_list
    argv = ["check", "--train-list", str(list_file), "--val-list", str(path), "--root", str(image_folder), "--json"]
    code = main(argv)
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    for lineno in bad_lines:
        assert any(f"{path} line {lineno}:" in e for e in report["errors"]), (lineno, report["errors"])
    assert sum(report["counts"]["val"].values()) == len(from_folder(image_folder))  # every good line was checked


def test_loading_still_stops_at_the_first_bad_line(bad_list, list_file, image_folder):
    path, bad_lines = bad_list
    with pytest.raises(DataError, match=f"line {bad_lines[0]}: expected '<path> <label>'"):
        from_list(path, root=image_folder, classes=["blue", "green", "red"])
