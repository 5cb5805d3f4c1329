"""Unreadable images are skipped and counted (or stop the run), and `transferkit check` lists every problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.cli import main
from transferkit.config import TrainConfig
from transferkit.data import DataError, ImageDataset, from_folder
from transferkit.data.check import image_problem
from transferkit.train.runner import train_run

SMALL_LIMIT = 3000  # pixels; the generated images are 40 x 40 = 1,600


def _bad_files(folder: Path) -> dict[str, Path]:
    """One bad file of each kind, written into `folder`'s class folders."""
    good = next((folder / "red").glob("*.png"))
    jpeg = folder / "red" / "photo.jpg"
    Image.open(good).convert("RGB").save(jpeg, quality=90)
    data = jpeg.read_bytes()
    files = {
        "zero-byte": folder / "blue" / "empty.png",
        "truncated-jpeg": folder / "green" / "cut.jpg",
        "text-as-jpg": folder / "blue" / "notes.jpg",
        "bomb-png": folder / "green" / "bomb.png",
    }
    files["zero-byte"].write_bytes(b"")
    files["truncated-jpeg"].write_bytes(data[: len(data) // 2])
    files["text-as-jpg"].write_text("this is not an image\n")
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(files["bomb-png"])  # 6,400 px > SMALL_LIMIT
    jpeg.unlink()
    return files


@pytest.fixture
def bad_folder(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", SMALL_LIMIT)
    folder = tmp_path / "shapes"
    shutil.copytree(image_folder, folder)
    return folder, _bad_files(folder)


def test_each_bad_file_is_recognised(bad_folder):
    folder, files = bad_folder
    reasons = {kind: image_problem(path) for kind, path in files.items()}
    assert "0 bytes" in reasons["zero-byte"]
    assert "truncated" in reasons["truncated-jpeg"]
    assert "not a recognised image" in reasons["text-as-jpg"]
    assert "decompression bomb" in reasons["bomb-png"] or "too large" in reasons["bomb-png"]
    assert image_problem(next((folder / "red").glob("*.png"))) is None


def _config(**kw) -> TrainConfig:
    return TrainConfig(backbone="tiny_resnet", strategy="full", epochs=1, batch_size=8, image_size=32, **kw)


def test_too_many_bad_images_stop_the_run_with_a_clear_message(bad_folder, tmp_path):
    folder, files = bad_folder  # 4 bad of 40 = 10% > the 5% default
    with pytest.raises(DataError, match=r"4 of 40 images \(10\.0%\) cannot be used.*max_bad_fraction"):
        train_run(_config(), from_folder(folder), run_dir=tmp_path / "run")


def test_bad_images_are_skipped_logged_and_counted(bad_folder, tmp_path, capsys):
    folder, files = bad_folder
    run = tmp_path / "run"
    train_run(_config(max_bad_fraction=0.2), from_folder(folder), run_dir=run)
    err = capsys.readouterr().err.replace("\n", "")
    for path in files.values():
        assert path.name in err
    assert json.loads((run / "summary.json").read_text())["skipped_images"] == 4
    listed = {Path(item["path"]).name for item in json.loads((run / "data.json").read_text())["skipped_images"]}
    assert listed == {p.name for p in files.values()}


def test_dataset_survives_an_image_that_breaks_mid_epoch(image_folder, tmp_path):
    folder = tmp_path / "shapes"
    shutil.copytree(image_folder, folder)
    source = from_folder(folder)
    source.paths[3].write_bytes(b"")  # broken after the source was listed (and checked)
    strict = ImageDataset(source)
    with pytest.raises(DataError, match=source.paths[3].name):
        strict[3]
    lenient = ImageDataset(source, skip_unreadable=True)
    items = [lenient[i] for i in range(len(source))]
    assert len(items) == len(source)
    assert items[3][1] == int(source.labels[4])  # the next image stands in, with its own label
    assert list(lenient.unreadable) == [str(source.paths[3])]


def test_check_lists_every_problem_and_exits_1(bad_folder, tmp_path, capsys):
    folder, files = bad_folder
    (folder / "purple").mkdir()  # an empty class
    test = tmp_path / "test"
    for cls in ("blue", "green", "purple", "red"):
        (test / cls).mkdir(parents=True)
    leaked = next((folder / "red").glob("*.png"))
    shutil.copy(leaked, test / "red" / "copy-of-train.png")
    for cls in ("blue", "green", "purple"):
        shutil.copy(leaked, test / cls / "x.png")  # same content under three other labels too
    assert main(["check", str(folder), "--test", str(test)]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    for path in files.values():
        assert path.name in out
    assert "purple: empty class folder" in out
    assert "in both train and test" in out and "copy-of-train.png" in out and leaked.name in out
    assert "different labels" in out


def test_check_reports_imbalance_and_passes_clean_data(image_folder, tmp_path, capsys):
    assert main(["check", str(image_folder)]) == 0
    assert "imbalance 1.0:1" in capsys.readouterr().out
    folder = tmp_path / "skewed"
    shutil.copytree(image_folder, folder)
    for extra in list((folder / "red").glob("*.png"))[1:]:
        extra.unlink()  # red: 1 image, others 12
    assert main(["check", str(folder), "--json"]) == 1  # one image cannot be split for validation: an error
    report = json.loads(capsys.readouterr().out)
    assert any("'red' have only 1 image" in e for e in report["errors"])
    assert report["imbalance"]["train"] == 12.0
    assert any("class imbalance 12.0:1" in w for w in report["warnings"])
