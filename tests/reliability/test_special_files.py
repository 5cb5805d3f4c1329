"""A FIFO (or any non-regular file) named like an image is reported and skipped, never opened and waited on."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from transferkit.cli import main
from transferkit.config import TrainConfig
from transferkit.data import DataError, from_folder, open_rgb
from transferkit.data.check import image_problem
from transferkit.train.runner import train_run

LIMIT_S = 120  # far above what each test needs; reading a FIFO without a writer would wait forever


class Hung(BaseException):
    """Not an OSError (TimeoutError is one): the code under test must not take it for an unreadable file."""


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail the test (instead of hanging the suite) if anything blocks on the FIFO."""

    def _timeout(signum, frame):
        raise Hung(f"blocked for {LIMIT_S} s: a FIFO was opened")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo_folder(image_folder, tmp_path):
    folder = tmp_path / "shapes"
    shutil.copytree(image_folder, folder)
    fifo = folder / "red" / "pipe.png"
    os.mkfifo(fifo)
    return folder, fifo


def test_non_regular_files_are_named_as_such(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "dir.png").mkdir()
    assert image_problem(fifo) == "not a regular file (a named pipe (FIFO))"
    assert image_problem(tmp_path / "dir.png") == "not a regular file (a directory)"
    assert "character device" in image_problem("/dev/zero")  # would otherwise read forever
    with pytest.raises(DataError, match=r"pipe\.png: not a regular file"):
        open_rgb(fifo)


def test_check_reports_the_fifo_and_exits_1(fifo_folder, capsys):
    folder, fifo = fifo_folder
    assert main(["check", str(folder), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["bad_images"] == [{"path": str(fifo), "reason": "not a regular file (a named pipe (FIFO))"}]
    assert report["counts"]["train"]["red"] == 12  # the real images are all counted


def test_train_skips_the_fifo_like_an_unreadable_image(fifo_folder, tmp_path, capsys):
    folder, fifo = fifo_folder
    config = TrainConfig(backbone="tiny_resnet", strategy="full", epochs=1, batch_size=8, image_size=32, seed=0)
    train_run(config, from_folder(folder), run_dir=tmp_path / "run")
    assert "pipe.png" in capsys.readouterr().err.replace("\n", "")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_images"] == 1


def test_predict_refuses_the_fifo_with_a_clear_error(full_run, fifo_folder, capsys):
    folder, fifo = fifo_folder
    assert main(["predict", str(full_run.run_dir), str(fifo)]) == 2
    assert "pipe.png: not a regular file" in capsys.readouterr().err.replace("\n", "")
