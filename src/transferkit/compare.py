"""Compare fine-tuning strategies on one dataset: same split, seed, epochs and preprocessing for each.

Every strategy trains in its own, ordinary run directory under one compare directory::

    runs/<name>-NNN/
      compare.json            every figure below, and what the report is rebuilt from
      curves.png              loss and accuracy of every strategy (curves-fold-K.png with --cv)
      report.html             the self-contained report
      <strategy>/             a normal run directory (with --cv: <strategy>/fold-K/)
        curves.png, test/ (or val/): metrics.json, confusion.png, predictions.csv, misclassified/

A strategy that raises is recorded as failed (its traceback in ``error.txt``) and the others go on.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from transferkit._console import console, results
from transferkit.comparison import CompareResult, StrategyRun, StrategySummary, seconds_to_target
from transferkit.config import TrainConfig
from transferkit.data import DataError, ImageSource, stratified_folds, stratified_split
from transferkit.strategies import DEFAULT_STRATEGY, compare_defaults, get_strategy, strategy_names
from transferkit.train.rundir import RunDir, new_run_dir
from transferkit.train.runner import train_run
from transferkit.train.setup import resolve_device

__all__ = ["DEFAULT_STRATEGIES", "CompareResult", "StrategyRun", "StrategySummary", "run_compare"]

DEFAULT_STRATEGIES = compare_defaults()
"""The registered strategies marked `in_compare`, at import time (`compare_defaults()` is the live list)."""
_EXAMPLES = 24  # misclassified thumbnails kept per run for the report


def run_compare(
    train: ImageSource,
    *,
    val: ImageSource | None = None,
    test: ImageSource | None = None,
    config: TrainConfig | None = None,
    strategies: Sequence[str] | None = None,
    cv: int | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    report: bool = True,
) -> CompareResult:
    """Train each strategy on the same data with the same settings and compare them.

    Example:
        >>> from transferkit.data import from_folder
        >>> result = run_compare(from_folder("data/pets"), strategies=["linear-probe", "full"])  # doctest: +SKIP
        >>> result.best_strategy                                                              # doctest: +SKIP

    Args:
        train: Training images.
        val: Validation images; default a stratified `config.val_fraction` of `train`, split once and
            shared by every strategy.
        test: Test images; each strategy's best checkpoint is evaluated on them.
        config: Settings shared by every strategy (its `strategy` field is ignored). A strategy that takes a depth
            (`Strategy.uses_depth`), given no `freeze` or `freeze_modules`, freezes the first half of the stages.
        strategies: Strategy names (or ``auto``), in the order they run and appear in the table; default the
            registered strategies marked `Strategy.in_compare`.
        cv: Cross-validate with this many stratified folds of train + val; every fold is a sub-run.
        out: Folder for the compare directory.
        name: Its name (default: the data's name + ``-compare``); the directory is ``out/name-NNN``.
        report: Also write ``report.html``.

    Raises:
        ValueError: An unknown or repeated strategy, or `cv` below 2.
        DataError: The data cannot be split as asked.
    """
    strategies = _check_strategies(compare_defaults() if strategies is None else strategies)
    if cv is not None and cv < 2:
        raise ValueError(f"--cv {cv}: cross-validation needs at least 2 folds")
    config = replace(config or TrainConfig(), strategy=DEFAULT_STRATEGY)
    configs = {s: _strategy_config(config, s, len(train.classes)) for s in strategies}
    folds = _folds(train, val, config, cv)
    compare_dir = new_run_dir(out, name or _default_name(train))
    result = CompareResult(compare_dir, info=_info(config, configs, strategies, cv, train, val, test, folds))
    console.print(f"comparing {', '.join(strategies)} in {compare_dir}")

    for fold, fold_train, fold_val in folds:
        fold_runs = []
        for strategy in strategies:
            sub = Path(strategy) / f"fold-{fold}" if fold else Path(strategy)
            console.rule(f"{strategy}" + (f" — fold {fold}/{cv}" if fold else ""))
            run = _train_one(configs[strategy], fold_train, fold_val, test, compare_dir, sub, fold)
            fold_runs.append(run)
            result.runs.append(run)
            # Partial results survive an interrupted comparison: summaries of what has finished so far.
            result.summaries = [_summarise(s, [r for r in result.runs if r.strategy == s]) for s in strategies]
            result.summaries = [s for s in result.summaries if s.runs or s.failed]
            result.save()
        key = str(fold) if fold else "all"
        _time_to_target(compare_dir, fold_runs, result.targets, key)
        title = f"{config.backbone}: loss and accuracy per epoch" + (f", fold {fold} of {cv}" if fold else "")
        _plot_fold(compare_dir, fold_runs, "curves.png" if not fold else f"curves-fold-{fold}.png", title)

    result.summaries = [_summarise(s, [r for r in result.runs if r.strategy == s]) for s in strategies]
    result.best_strategy = _best(result.summaries)
    result.save()
    _print_summary(result)
    if report:
        from transferkit.report.html import build_report

        console.print(f"report: {build_report(compare_dir)}")
    return result


def _print_summary(result: CompareResult) -> None:
    """The table and the transfer gain (results, stdout), then what failed (stderr)."""
    from transferkit.report import summary_table

    results.print(summary_table(result))  # the comparison's result: stdout, as `transferkit runs` prints
    gain = result.transfer_gain_text()
    if gain:
        results.print(gain)
    for s in result.summaries:
        if s.error:
            console.print(f"[red]{s.strategy} failed:[/red] {s.error}", highlight=False, markup=True)


def _check_strategies(strategies: Sequence[str]) -> list[str]:
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    strategies = list(strategies)
    # auto trains the advised plan (transferkit advise) beside the fixed strategies.
    unknown = [s for s in strategies if s not in strategy_names() and s != "auto"]
    if unknown or not strategies:
        given = ", ".join(unknown) or "(none given)"
        raise ValueError(f"unknown strategy {given}; choose from {', '.join(strategy_names())} or auto")
    if len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies repeat: {', '.join(strategies)}")
    return strategies


def _strategy_config(config: TrainConfig, strategy: str, num_classes: int) -> TrainConfig:
    if _uses_depth(strategy) and config.freeze is None and not config.freeze_modules:
        from transferkit.models import backbone_stages, build_model

        stages = backbone_stages(build_model(config.backbone, num_classes, pretrained=False).model)
        return replace(config, strategy=strategy, freeze=len(stages) // 2)
    return replace(config, strategy=strategy)


def _folds(
    train: ImageSource, val: ImageSource | None, config: TrainConfig, cv: int | None
) -> list[tuple[int | None, ImageSource, ImageSource]]:
    """(fold number or None, train, val) — the split is made once here, never per strategy."""
    if cv:
        pool = _pool(train, val)
        return [
            (k + 1, pool.subset(t), pool.subset(v))
            for k, (t, v) in enumerate(stratified_folds(pool.labels, cv, names=list(pool.classes)))
        ]
    if val is None:
        train_idx, val_idx = stratified_split(train.labels, config.val_fraction, config.seed, names=list(train.classes))
        train, val = train.subset(train_idx), train.subset(val_idx)
    return [(None, train, val)]


def _pool(train: ImageSource, val: ImageSource | None) -> ImageSource:
    """Training and validation images together, for cross-validation folds."""
    if val is None:
        return train
    labels = np.concatenate([train.labels, val.labels])
    if train.paths is not None and val.paths is not None:
        return ImageSource(list(train.classes), labels, paths=train.paths + val.paths, name=train.name)
    if train.arrays is not None and val.arrays is not None and train.arrays.shape[1:] == val.arrays.shape[1:]:
        arrays = np.concatenate([train.arrays, val.arrays])
        return ImageSource(list(train.classes), labels, arrays=arrays, name=train.name)
    raise DataError(
        f"--cv pools {train.name} and {val.name}, which needs both as image files or as arrays of one image shape"
    )


def _train_one(
    config: TrainConfig,
    train: ImageSource,
    val: ImageSource,
    test: ImageSource | None,
    compare_dir: Path,
    sub: Path,
    fold: int | None,
) -> StrategyRun:
    from transferkit.evaluate import evaluate_run
    from transferkit.report import evaluate_and_save
    from transferkit.report.plots import plot_curves, plot_run_lr_find
    from transferkit.tracking import open_loggers
    from transferkit.tracking.run_files import finish_run

    run = StrategyRun(config.strategy, sub.as_posix(), fold)
    path = compare_dir / sub
    start = time.perf_counter()
    try:
        reused = None
        if config.strategy == "auto":
            from transferkit.advise.auto import resolve_auto, reused_run

            config = resolve_auto(config, train, path, val=val)
            reused = reused_run(path)  # the race's winning trial was this very run: nothing to train again
        loggers = open_loggers(config.log, path, config.to_dict())
        trained = reused or train_run(config, train, val, run_dir=path, listeners=[loggers.log_epoch])
        run.trainable_params, run.best_val_acc, run.best_epoch = (
            trained.trainable_params,
            trained.best_val_acc,
            trained.best_epoch,
        )
        run.train_seconds = trained.seconds
        run.eval_split = "test" if test is not None else "val"
        scored = test if test is not None else val
        if get_strategy(config.strategy).classical:
            run.classical = True
            run.model = json.loads((path / "summary.json").read_text()).get("baseline")
            metrics, _ = evaluate_run(path, scored, out_dir=path / run.eval_split)
        else:
            plot_curves({config.strategy: RunDir(path).metrics()}, path / "curves.png", title=str(sub))
            plot_run_lr_find(path)  # the range test's curve, when --lr auto ran one
            device = resolve_device(config.device)
            metrics = evaluate_and_save(path, scored, path / run.eval_split, device, _EXAMPLES)
        run.eval_acc = metrics.accuracy
        run.eval_balanced_acc, run.eval_macro_f1 = metrics.balanced_accuracy, metrics.macro_f1
        if test is not None:
            run.test_acc = metrics.accuracy
            RunDir(path).update_summary(test_acc=metrics.accuracy)
            console.print(f"test accuracy {100 * metrics.accuracy:.2f}% on {metrics.n} images")
        split = run.eval_split
        finish_run(
            loggers,
            path,
            {"best_val_acc": trained.best_val_acc, f"{split}_acc": metrics.accuracy,
             f"{split}_balanced_acc": metrics.balanced_accuracy, f"{split}_macro_f1": metrics.macro_f1},
            path / split / "confusion.png",
        )  # fmt: skip
    except Exception as exc:  # one broken strategy must not cost the others their results
        path.mkdir(parents=True, exist_ok=True)
        (path / "error.txt").write_text(traceback.format_exc())
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        console.print(f"[red]{config.strategy} failed:[/red] {run.error} (traceback in {path / 'error.txt'})")
    run.wall_seconds = time.perf_counter() - start
    return run


def _time_to_target(compare_dir: Path, runs: list[StrategyRun], targets: dict[str, float], key: str) -> None:
    done = [r for r in runs if r.status == "ok" and not r.classical]  # a baseline has no epochs to time
    if not done:
        return
    target = min(r.best_val_acc for r in done)
    targets[key] = target
    for r in done:
        r.seconds_to_target = seconds_to_target(RunDir(compare_dir / r.run_dir).metrics(), target)


def _plot_fold(compare_dir: Path, runs: list[StrategyRun], name: str, title: str) -> None:
    from transferkit.report.plots import plot_curves

    histories = {
        r.strategy: RunDir(compare_dir / r.run_dir).metrics() for r in runs if r.status == "ok" and not r.classical
    }
    if histories:
        plot_curves(histories, compare_dir / name, title=title)


def _summarise(strategy: str, runs: list[StrategyRun]) -> StrategySummary:
    done = [r for r in runs if r.status == "ok"]
    failed = [r for r in runs if r.status != "ok"]
    status = "failed" if not done else ("incomplete" if failed else "ok")
    summary = StrategySummary(strategy, status, len(done), len(failed), error=failed[0].error if failed else None)
    summary.wall_seconds = sum(r.wall_seconds or 0.0 for r in runs)
    if not done:
        return summary
    several = len(runs) > 1
    summary.trainable_params = done[0].trainable_params
    summary.classical = done[0].classical
    summary.model = done[0].model
    val = [r.best_val_acc for r in done]
    summary.val_acc_mean, summary.val_acc_std = float(np.mean(val)), float(np.std(val)) if several else None
    test = [r.test_acc for r in done if r.test_acc is not None]
    if test:
        summary.test_acc_mean, summary.test_acc_std = float(np.mean(test)), float(np.std(test)) if several else None
    reached = [r.seconds_to_target for r in done]
    if None not in reached and not failed:
        summary.seconds_to_target = float(np.mean(reached))
    return summary


def _best(summaries: list[StrategySummary]) -> str | None:
    """The strategy with the best validation accuracy: a model is never chosen by its test score."""
    scored = [(s.val_acc_mean, s.strategy) for s in summaries if s.runs and not s.classical]
    scored = [(score, name) for score, name in scored if score is not None]
    return max(scored, key=lambda item: item[0])[1] if scored else None


def _info(
    config: TrainConfig,
    configs: dict[str, TrainConfig],
    strategies: list[str],
    cv: int | None,
    train: ImageSource,
    val: ImageSource | None,
    test: ImageSource | None,
    folds: list,
) -> dict:
    base = config.to_dict()
    base.pop("strategy")
    data = {"train": folds[0][1].describe(), "val": folds[0][2].describe()}
    if cv:
        data = {"pool (train + val)": _pool(train, val).describe()}
    if test is not None:
        data["test"] = test.describe()
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "backbone": config.backbone,
        "strategies": strategies,
        "cv": cv,
        "eval_split": "test" if test is not None else "val",
        "config": base,
        "per_strategy": {s: {"freeze": c.freeze} for s, c in configs.items() if _uses_depth(s)},
        "data": data,
        "curves": ["curves.png"] if not cv else [f"curves-fold-{k}.png" for k in range(1, cv + 1)],
    }


def _default_name(source: ImageSource) -> str:
    path = Path(source.name or "data")
    base = path.parent.name if path.name in ("train", "training") and path.parent.name else path.name
    return f"{base or 'data'}-compare"


def _uses_depth(strategy: str) -> bool:
    return strategy != "auto" and get_strategy(strategy).uses_depth
