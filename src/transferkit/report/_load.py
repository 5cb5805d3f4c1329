"""Read a compare directory, or a single run directory, into a `CompareResult` for the report."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from transferkit.comparison import CompareResult, StrategyRun, StrategySummary, seconds_to_target
from transferkit.train.rundir import RunDir

__all__ = ["ReportError", "eval_dir", "load_result"]

# Where a run's evaluation may live: compare writes test/ or val/, Finetuner test/, `evaluate` eval/.
_EVAL_DIRS = ("test", "val", "eval")


class ReportError(ValueError):
    """The folder holds neither a comparison nor a training run."""


def load_result(path: str | Path) -> CompareResult:
    """``compare.json`` of a compare directory, or the files of one run directory as a one-row comparison.

    Raises:
        ReportError: `path` is not a compare or run directory.
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: directory not found")
    if (path / "compare.json").is_file():
        return CompareResult.load(path)
    if (path / "summary.json").is_file() or (path / "metrics.jsonl").is_file():
        return _single_run(path)
    raise ReportError(
        f"{path}: not a compare directory (no compare.json) nor a run directory (no summary.json or metrics.jsonl)"
    )


def eval_dir(run_path: Path, split: str | None) -> Path | None:
    """The folder holding a run's evaluation (metrics.json): `split` if given and present, else the first found."""
    for name in ([split] if split else []) + list(_EVAL_DIRS):
        if (run_path / name / "metrics.json").is_file():
            return run_path / name
    return None


def _single_run(path: Path) -> CompareResult:
    run = RunDir(path)
    summary = _read_json(path / "summary.json") or {}
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else {}
    config = config or {}
    strategy = str(config.get("strategy", "run"))
    rows = run.metrics()
    best_val = summary.get("best_val_acc", max((r["val_acc"] for r in rows), default=None))
    found = eval_dir(path, "test")
    split = found.name if found else None
    evaluated = _read_json(found / "metrics.json") if found else {}
    eval_acc = evaluated.get("accuracy")
    test_acc = summary.get("test_acc", eval_acc if split == "test" else None)
    seconds = sum(float(r["seconds"]) for r in rows)
    single = StrategyRun(
        strategy,
        ".",
        status="ok",
        trainable_params=summary.get("trainable_params"),
        best_val_acc=best_val,
        best_epoch=summary.get("best_epoch"),
        test_acc=test_acc,
        eval_split=split,
        eval_acc=eval_acc,
        eval_balanced_acc=evaluated.get("balanced_accuracy"),
        eval_macro_f1=evaluated.get("macro_f1"),
        train_seconds=summary.get("seconds"),
        wall_seconds=summary.get("seconds", seconds),
        seconds_to_target=seconds_to_target(rows, best_val),
    )
    agg = StrategySummary(
        strategy,
        "ok",
        runs=1,
        trainable_params=single.trainable_params,
        val_acc_mean=best_val,
        test_acc_mean=test_acc,
        wall_seconds=single.wall_seconds or 0.0,
        seconds_to_target=single.seconds_to_target,
    )
    data = _read_json(path / "data.json") or {}
    info = {
        "backbone": config.get("backbone", ""),
        "strategies": [strategy],
        "cv": None,
        "eval_split": split,
        "config": config,
        "data": {k: v for k, v in data.items() if k in ("train", "val") and isinstance(v, dict)},
        "curves": ["curves.png"],
    }
    targets = {"all": best_val} if best_val is not None else {}
    return CompareResult(path, [single], [agg], targets, strategy, info)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
