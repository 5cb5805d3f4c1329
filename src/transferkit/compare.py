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
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import DataError, ImageSource, stratified_folds, stratified_split
from transferkit.models.freezing import STRATEGIES
from transferkit.train.rundir import RunDir, new_run_dir
from transferkit.train.runner import resolve_device, train_run

__all__ = ["DEFAULT_STRATEGIES", "CompareResult", "StrategyRun", "StrategySummary", "run_compare"]

DEFAULT_STRATEGIES = ("linear-probe", "lp-ft", "full", "scratch")
_EXAMPLES = 24  # misclassified thumbnails kept per run for the report


@dataclass
class StrategyRun:
    """One strategy trained on one split (one fold with cross-validation)."""

    strategy: str
    run_dir: str
    """Relative to the compare directory."""
    fold: int | None = None
    status: str = "ok"
    """ok or failed."""
    error: str | None = None
    trainable_params: int | None = None
    best_val_acc: float | None = None
    best_epoch: int | None = None
    test_acc: float | None = None
    eval_split: str | None = None
    """The set the best checkpoint was evaluated on for the confusion matrix and examples: test or val."""
    eval_acc: float | None = None
    train_seconds: float | None = None
    wall_seconds: float | None = None
    """Training, evaluation and figures of this run."""
    seconds_to_target: float | None = None
    """Summed epoch seconds until the validation accuracy first reached the fold's target."""


@dataclass
class StrategySummary:
    """A strategy over all its folds (one fold without cross-validation)."""

    strategy: str
    status: str
    """ok, failed (no run finished) or partial (some folds failed)."""
    runs: int = 0
    failed: int = 0
    trainable_params: int | None = None
    val_acc_mean: float | None = None
    val_acc_std: float | None = None
    test_acc_mean: float | None = None
    test_acc_std: float | None = None
    wall_seconds: float = 0.0
    seconds_to_target: float | None = None
    """Mean over folds; None when a fold never reached its target."""
    error: str | None = None


@dataclass
class CompareResult:
    """The outcome of `run_compare`, saved as ``compare.json`` in the compare directory.

    Attributes:
        compare_dir: The compare directory.
        runs: Every sub-run, in the order they ran.
        summaries: One per strategy, in the order given.
        targets: Per fold (key ``"1"``... or ``"all"``), the lowest best validation accuracy among the
            strategies that finished: the level every strategy is timed to.
        best_strategy: Highest mean test accuracy (validation accuracy without a test set).
        info: Backbone, config, data summaries and figure files, for the report.
    """

    compare_dir: Path
    runs: list[StrategyRun] = field(default_factory=list)
    summaries: list[StrategySummary] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)
    best_strategy: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def cv(self) -> int | None:
        return self.info.get("cv")

    def summary(self, strategy: str) -> StrategySummary:
        return next(s for s in self.summaries if s.strategy == strategy)

    def to_dict(self) -> dict:
        return {
            "runs": [asdict(r) for r in self.runs],
            "summaries": [asdict(s) for s in self.summaries],
            "targets": self.targets,
            "best_strategy": self.best_strategy,
            **self.info,
        }

    def save(self) -> Path:
        path = self.compare_dir / "compare.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    @classmethod
    def load(cls, compare_dir: str | Path) -> CompareResult:
        """Read ``compare.json`` back."""
        compare_dir = Path(compare_dir)
        data = json.loads((compare_dir / "compare.json").read_text())
        runs = [StrategyRun(**_known(StrategyRun, r)) for r in data.pop("runs")]
        summaries = [StrategySummary(**_known(StrategySummary, s)) for s in data.pop("summaries")]
        return cls(compare_dir, runs, summaries, data.pop("targets"), data.pop("best_strategy"), data)


def run_compare(
    train: ImageSource,
    *,
    val: ImageSource | None = None,
    test: ImageSource | None = None,
    config: TrainConfig | None = None,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
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
        config: Settings shared by every strategy (its `strategy` field is ignored). `partial` without
            `freeze` or `freeze_modules` freezes the first half of the backbone's stages.
        strategies: Strategy names, in the order they run and appear in the table.
        cv: Cross-validate with this many stratified folds of train + val; every fold is a sub-run.
        out: Folder for the compare directory.
        name: Its name (default: the data's name + ``-compare``); the directory is ``out/name-NNN``.
        report: Also write ``report.html``.

    Raises:
        ValueError: An unknown or repeated strategy, or `cv` below 2.
        DataError: The data cannot be split as asked.
    """
    strategies = _check_strategies(strategies)
    if cv is not None and cv < 2:
        raise ValueError(f"--cv {cv}: cross-validation needs at least 2 folds")
    config = replace(config or TrainConfig(), strategy="linear-probe")
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
    result.best_strategy = _best(result.summaries, test is not None)
    result.save()
    from transferkit.report._table import summary_table

    console.print(summary_table(result))
    for s in result.summaries:
        if s.error:
            console.print(f"[red]{s.strategy} failed:[/red] {s.error}", highlight=False, markup=True)
    if report:
        from transferkit.report.html import build_report

        console.print(f"report: {build_report(compare_dir)}")
    return result


def _check_strategies(strategies: Sequence[str]) -> list[str]:
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    strategies = list(strategies)
    # auto trains the advised plan (transferkit advise) beside the fixed strategies.
    unknown = [s for s in strategies if s not in STRATEGIES and s != "auto"]
    if unknown or not strategies:
        given = ", ".join(unknown) or "(none given)"
        raise ValueError(f"unknown strategy {given}; choose from {', '.join(STRATEGIES)} or auto")
    if len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies repeat: {', '.join(strategies)}")
    return strategies


def _strategy_config(config: TrainConfig, strategy: str, num_classes: int) -> TrainConfig:
    if strategy == "partial" and config.freeze is None and not config.freeze_modules:
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
        return [(k + 1, pool.subset(t), pool.subset(v)) for k, (t, v) in enumerate(stratified_folds(pool.labels, cv))]
    if val is None:
        train_idx, val_idx = stratified_split(train.labels, config.val_fraction, config.seed)
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
    from transferkit.report._examples import evaluate_and_save
    from transferkit.report.plots import plot_curves

    run = StrategyRun(config.strategy, sub.as_posix(), fold)
    path = compare_dir / sub
    start = time.perf_counter()
    try:
        trained = train_run(config, train, val, run_dir=path)
        run.trainable_params, run.best_val_acc, run.best_epoch = (
            trained.trainable_params,
            trained.best_val_acc,
            trained.best_epoch,
        )
        run.train_seconds = trained.seconds
        plot_curves({config.strategy: RunDir(path).metrics()}, path / "curves.png", title=str(sub))
        run.eval_split = "test" if test is not None else "val"
        metrics = evaluate_and_save(
            path, test if test is not None else val, path / run.eval_split, resolve_device(config.device), _EXAMPLES
        )
        run.eval_acc = metrics.accuracy
        if test is not None:
            run.test_acc = metrics.accuracy
            summary = RunDir(path).read_json("summary.json")
            RunDir(path).write_json("summary.json", {**summary, "test_acc": metrics.accuracy})
            console.print(f"test accuracy {100 * metrics.accuracy:.2f}% on {metrics.n} images")
    except Exception as exc:  # one broken strategy must not cost the others their results
        path.mkdir(parents=True, exist_ok=True)
        (path / "error.txt").write_text(traceback.format_exc())
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        console.print(f"[red]{config.strategy} failed:[/red] {run.error} (traceback in {path / 'error.txt'})")
    run.wall_seconds = time.perf_counter() - start
    return run


def _time_to_target(compare_dir: Path, runs: list[StrategyRun], targets: dict[str, float], key: str) -> None:
    done = [r for r in runs if r.status == "ok"]
    if not done:
        return
    target = min(r.best_val_acc for r in done)
    targets[key] = target
    for r in done:
        elapsed = 0.0
        for row in RunDir(compare_dir / r.run_dir).metrics():
            elapsed += float(row["seconds"])
            if float(row["val_acc"]) >= target - 1e-9:
                r.seconds_to_target = elapsed
                break


def _plot_fold(compare_dir: Path, runs: list[StrategyRun], name: str, title: str) -> None:
    from transferkit.report.plots import plot_curves

    histories = {r.strategy: RunDir(compare_dir / r.run_dir).metrics() for r in runs if r.status == "ok"}
    if histories:
        plot_curves(histories, compare_dir / name, title=title)


def _summarise(strategy: str, runs: list[StrategyRun]) -> StrategySummary:
    done = [r for r in runs if r.status == "ok"]
    failed = [r for r in runs if r.status != "ok"]
    status = "failed" if not done else ("partial" if failed else "ok")
    summary = StrategySummary(strategy, status, len(done), len(failed), error=failed[0].error if failed else None)
    summary.wall_seconds = sum(r.wall_seconds or 0.0 for r in runs)
    if not done:
        return summary
    several = len(runs) > 1
    summary.trainable_params = done[0].trainable_params
    val = [r.best_val_acc for r in done]
    summary.val_acc_mean, summary.val_acc_std = float(np.mean(val)), float(np.std(val)) if several else None
    test = [r.test_acc for r in done if r.test_acc is not None]
    if test:
        summary.test_acc_mean, summary.test_acc_std = float(np.mean(test)), float(np.std(test)) if several else None
    reached = [r.seconds_to_target for r in done]
    if None not in reached and not failed:
        summary.seconds_to_target = float(np.mean(reached))
    return summary


def _best(summaries: list[StrategySummary], has_test: bool) -> str | None:
    scored = [(s.test_acc_mean if has_test else s.val_acc_mean, s.strategy) for s in summaries if s.runs]
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
        "per_strategy": {s: {"freeze": c.freeze} for s, c in configs.items() if s == "partial"},
        "data": data,
        "curves": ["curves.png"] if not cv else [f"curves-fold-{k}.png" for k in range(1, cv + 1)],
    }


def _default_name(source: ImageSource) -> str:
    path = Path(source.name or "data")
    base = path.parent.name if path.name in ("train", "training") and path.parent.name else path.name
    return f"{base or 'data'}-compare"


def _known(cls: type, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
