"""A comparison's results: one row per strategy run, summaries per strategy, saved as ``compare.json``.

`compare` writes them and the report reads them; both import them from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

__all__ = ["CompareResult", "StrategyRun", "StrategySummary", "seconds_to_target"]


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
    eval_balanced_acc: float | None = None
    """Mean per-class recall on the `eval_split` set."""
    eval_macro_f1: float | None = None
    train_seconds: float | None = None
    wall_seconds: float | None = None
    """Training, evaluation and figures of this run."""
    seconds_to_target: float | None = None
    """Summed epoch seconds until the validation accuracy first reached the fold's target."""
    classical: bool = False
    """A classical baseline (no network trained): not timed to the target, never the best strategy."""
    model: str | None = None
    """The classical model validation chose (``features-svm``...)."""


@dataclass
class StrategySummary:
    """A strategy over all its folds (one fold without cross-validation)."""

    strategy: str
    status: str
    """ok, failed (no run finished) or incomplete (some folds failed)."""
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
    classical: bool = False
    model: str | None = None


@dataclass
class CompareResult:
    """The outcome of `run_compare`, saved as ``compare.json`` in the compare directory.

    Attributes:
        compare_dir: The compare directory.
        runs: Every sub-run, in the order they ran.
        summaries: One per strategy, in the order given.
        targets: Per fold (key ``"1"``... or ``"all"``), the lowest best validation accuracy among the
            strategies that finished: the level every strategy is timed to.
        best_strategy: Highest mean validation accuracy among the strategies that train a network (never chosen
            by test accuracy).
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

    def transfer_gain(self) -> dict | None:
        """The best strategy against the classical baseline, in points of test accuracy (validation without a
        test set); None without a finished baseline and strategy. Both were chosen on validation."""
        baseline = next((s for s in self.summaries if s.classical and s.runs), None)
        if baseline is None or self.best_strategy is None:
            return None
        best = self.summary(self.best_strategy)
        split = "test" if best.test_acc_mean is not None and baseline.test_acc_mean is not None else "val"
        ours, theirs = (
            (best.test_acc_mean, baseline.test_acc_mean)
            if split == "test"
            else (best.val_acc_mean, baseline.val_acc_mean)
        )
        return {
            "strategy": best.strategy,
            "strategy_acc": ours,
            "baseline": baseline.model or baseline.strategy,
            "baseline_acc": theirs,
            "points": 100 * (ours - theirs),
            "split": split,
        }

    def transfer_gain_text(self) -> str | None:
        """One sentence: how much transfer bought over the baseline, or plainly that it bought nothing."""
        gain = self.transfer_gain()
        if gain is None:
            return None
        ours = f"{gain['strategy']} {100 * gain['strategy_acc']:.2f}%"
        theirs = f"the baseline ({gain['baseline']}) {100 * gain['baseline_acc']:.2f}%"
        if gain["points"] > 0:
            points = f"+{gain['points']:.2f} points {gain['split']} accuracy"
            return f"Transfer gain over the best baseline: {points} ({ours} vs {theirs})."
        return (
            f"No transfer gain: {theirs} {gain['split']} accuracy matches or beats the best strategy, {ours} "
            f"({gain['points']:+.2f} points)."
        )

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


def seconds_to_target(rows: list[dict], target: float | None) -> float | None:
    """Summed epoch seconds of metrics rows until the validation accuracy first reached `target` (None: never)."""
    if target is None:
        return None
    elapsed = 0.0
    for row in rows:
        elapsed += float(row["seconds"])
        if float(row["val_acc"]) >= target - 1e-9:
            return elapsed
    return None


def _known(cls: type, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
