"""Run folders are named after the dataset, --name cannot escape --out, and run files name the data absolutely."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transferkit.cli import main
from transferkit.data import ImageSource
from transferkit.train.rundir import run_dir_name

TINY = ["--backbone", "tiny_resnet", "--epochs", "1", "--image-size", "32", "--batch-size", "8"]


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("/d/dig/train", "dig"),
        ("/d/dig/Val", "dig"),
        ("/d/pets", "pets"),
        ("/d/crlf.txt", "crlf"),
        ("/d/dig/test.txt", "dig"),
    ],
)
def test_short_name_is_the_datasets_meaningful_name(name, short):
    source = ImageSource(["a"], np.zeros(1, np.int64), arrays=np.zeros((1, 2, 2), np.uint8), name=name)
    assert source.short_name == short


@pytest.mark.parametrize(("given", "safe"), [("../x", "x"), (".hidden", "hidden"), ("a/b", "a-b"), ("..", "run")])
def test_run_names_stay_one_visible_folder(given, safe):
    assert run_dir_name(given) == safe


def test_train_names_runs_after_the_dataset(tmp_path, image_folder, list_file, capsys):
    shutil.copytree(image_folder, tmp_path / "dig" / "train")
    out = tmp_path / "runs"
    assert (
        main(["-q", "train", str(tmp_path / "dig" / "train"), "--strategy", "linear-probe", *TINY, "--out", str(out)])
        == 0
    )
    crlf = tmp_path / "crlf.txt"
    crlf.write_text(list_file.read_text())
    argv = ["-q", "train", "--train-list", str(crlf), "--root", str(image_folder), "--strategy", "linear-probe", *TINY]
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(out), "--name", "../escape"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["crlf-linear-probe-001", "dig-linear-probe-001", "escape-001"]
    assert not (tmp_path / "escape-001").exists()


def test_export_from_another_folder_finds_the_data(tmp_path, image_folder, monkeypatch, capsys):
    shutil.copytree(image_folder, tmp_path / "work" / "shapes")
    monkeypatch.chdir(tmp_path / "work")
    assert main(["-q", "train", "shapes", "--strategy", "full", *TINY, "--out", "runs"]) == 0
    described = json.loads((tmp_path / "work" / "runs" / "shapes-full-001" / "data.json").read_text())
    assert described["train"]["name"] == str(tmp_path / "work" / "shapes")  # absolute, not "shapes"

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code = main(["export", str(tmp_path / "work" / "runs"), "--format", "torchscript", "--out", "exported"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (
        "parity images: 8 from validation split of" in err
        and (tmp_path / "elsewhere" / "exported" / "model.pt").is_file()
    )
