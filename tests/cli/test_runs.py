"""Run folders a user can hand back: the --out folder, a compare folder, a checkpoint file; `transferkit runs`."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from transferkit.cli import main
from transferkit.runs import RunSelectionError, find_runs, resolve_run

TINY = ["--backbone", "tiny_resnet", "--epochs", "1", "--image-size", "32", "--batch-size", "8"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, full_run, image_folder):
    """An --out folder holding the `full` run (older) and a linear-probe run (newer)."""
    out = tmp_path_factory.mktemp("out")
    shutil.copytree(full_run.run_dir, out / "shapes-full-001")
    os.utime(out / "shapes-full-001" / "config.yaml", (1_700_000_000, 1_700_000_000))
    assert main(["-q", "train", str(image_folder), "--strategy", "linear-probe", *TINY, "--out", str(out)]) == 0
    return out


def test_the_out_folder_of_one_run_is_that_run(full_run, val_folder, capsys):
    out_folder = full_run.run_dir.parent  # holds only this run
    code, out, err = _run(capsys, "evaluate", out_folder, val_folder, "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 24
    assert (full_run.run_dir / "eval" / "metrics.json").is_file()


def test_several_runs_are_listed_newest_first_with_how_to_choose(two_runs, val_folder, capsys):
    code, out, err = _run(capsys, "evaluate", two_runs, val_folder)
    assert code == 2 and out == ""
    err = err.replace("\n", "")
    assert "holds 2 runs" in err and "--strategy (full, linear-probe)" in err
    newer, older = err.index("linear-probe-001"), err.index("shapes-full-001")
    assert newer < older

    code, out, err = _run(capsys, "evaluate", two_runs, val_folder, "--strategy", "full", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 24

    code, _, err = _run(capsys, "predict", two_runs, val_folder, "--strategy", "scratch")
    assert code == 2 and "no run of strategy scratch (it has full, linear-probe)" in err.replace("\n", "")


def test_runs_lists_strategy_backbone_accuracy_and_date(two_runs, capsys):
    code, out, err = _run(capsys, "runs", two_runs, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [r["strategy"] for r in listed] == ["linear-probe", "full"]  # newest first
    assert all(r["backbone"] == "tiny_resnet" and 0 <= r["best_val_acc"] <= 1 for r in listed)
    assert listed[1]["date"] == time.strftime("%Y-%m-%d %H:%M", time.localtime(1_700_000_000))  # when it began

    code, out, _ = _run(capsys, "runs", two_runs)
    assert code == 0 and "shapes-full-001" in out and "linear-probe" in out and "tiny_resnet" in out

    code, _, err = _run(capsys, "runs", two_runs / "nothing-here")
    assert code == 2 and "folder not found" in err


def test_a_checkpoint_file_stands_for_its_run(full_run, val_folder, capsys):
    code, out, err = _run(capsys, "evaluate", full_run.run_dir / "best.safetensors", val_folder, "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 24
    assert resolve_run(full_run.run_dir / "last.safetensors").which(None) == "last"
    code, _, err = _run(capsys, "evaluate", full_run.run_dir / "last.safetensors", val_folder, "--checkpoint", "best")
    assert code == 2 and "that is the last checkpoint" in err


def test_predict_a_folder_predicts_every_image_in_it(full_run, val_folder, capsys):
    code, out, err = _run(capsys, "predict", full_run.run_dir, val_folder / "red", val_folder / "blue", "--json")
    assert code == 0, err
    paths = [p["path"] for p in json.loads(out)]
    assert paths == [
        str(p) for p in [*sorted((val_folder / "red").glob("*.png")), *sorted((val_folder / "blue").glob("*.png"))]
    ]
    code, _, err = _run(capsys, "predict", full_run.run_dir, val_folder.parent, "--json")  # sub-folders too
    assert code == 0, err


def test_evaluate_on_some_of_the_classes(full_run, val_folder, tmp_path, capsys):
    some = tmp_path / "only-red"
    shutil.copytree(val_folder / "red", some / "red")
    code, out, err = _run(capsys, "evaluate", full_run.run_dir, some, "--json", "--out", tmp_path / "eval")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["n"] == 8 and metrics["classes"] == ["blue", "green", "red"]
    assert metrics["support"] == [0, 0, 8]
    code, out, _ = _run(capsys, "evaluate", full_run.run_dir, some, "--out", tmp_path / "eval")
    assert code == 0 and "not in this data (no figures): blue, green" in out
    assert "│ blue" not in out  # rows only for the classes present

    shutil.copytree(val_folder / "red", some / "purple")
    code, _, err = _run(capsys, "evaluate", full_run.run_dir, some)
    assert code == 2 and "classes the run was not trained on: purple" in err


def test_a_compare_folder_with_strategy(tmp_path, image_folder, val_folder, capsys):
    args = ["compare", image_folder, "--strategies", "linear-probe,full", *TINY, "--out", tmp_path, "--no-report"]
    assert main([str(a) for a in args]) == 0
    capsys.readouterr()
    (compare,) = tmp_path.iterdir()
    with pytest.raises(RunSelectionError, match="choose with --strategy"):
        resolve_run(compare)
    assert resolve_run(compare, strategy="full").path == compare / "full"
    assert {r.strategy for r in find_runs(compare)} == {"linear-probe", "full"}

    code, out, err = _run(capsys, "predict", compare, val_folder / "red", "--strategy", "linear-probe", "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 8
    code, out, err = _run(capsys, "report", compare, "--strategy", "full")
    assert code == 0, err
    assert (compare / "full" / "report.html").is_file()


def test_resume_accepts_the_out_folder(full_run, tmp_path, image_folder, val_folder, capsys):
    out_folder = tmp_path / "out"
    shutil.copytree(full_run.run_dir, out_folder / "full")
    argv = ["train", image_folder, "--val", val_folder, "--out", out_folder, "--resume", out_folder, "--epochs", "6"]
    code, _, err = _run(capsys, *argv)
    assert code == 0, err
    assert len((out_folder / "full" / "metrics.jsonl").read_text().splitlines()) == 6
    assert [p.name for p in out_folder.iterdir()] == ["full"]  # continued, not a new run
