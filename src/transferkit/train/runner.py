"""One training run, from sources to a run directory with checkpoints and metrics.

It reads top to bottom: the setup steps (`train.setup`) build the session, data, model and tracker; then the
strategy's phases run one after another (`train._phases`); then the summary is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from transferkit._console import console
from transferkit.config import AUTO_LR, TrainConfig, parse_duration
from transferkit.data import ImageSource
from transferkit.strategies import Phase, Strategy, get_strategy
from transferkit.train._budget import TimeBudget
from transferkit.train._phases import PhaseRunner
from transferkit.train._resume import resumed_config
from transferkit.train._tracker import Tracker, catch_interrupts
from transferkit.train.loop import EpochResult, StepSettings
from transferkit.train.lr_find import LrFindError, range_test
from transferkit.train.setup import (
    RunData,
    RunModel,
    Session,
    check_fits,
    open_session,
    prepare_data,
    resolve_device,
    seed_everything,
    setup_model,
    setup_tracker,
    step_settings,
    write_run_files,
)

__all__ = ["RunResult", "auto_lr", "resolve_device", "run_phases", "seed_everything", "train_run"]


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    best_val_acc: float
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)
    seconds: float = 0.0
    trainable_params: int = 0
    frozen_params: int = 0
    stopped_early: bool = False
    best_val_score: float | None = None
    """The best epoch's `TrainConfig.select_by` figure (negated for a loss); a baseline's: the figure its model was
    chosen by (`evaluate.metrics.figure_for`)."""


def train_run(
    config: TrainConfig,
    train_source: ImageSource,
    val_source: ImageSource | None = None,
    *,
    run_dir: str | Path,
    resume: bool | str | Path = False,
    listeners: list[Callable[[dict, dict[str, float], list | None], None]] | None = None,
) -> RunResult:
    """Fine-tune `config.backbone` on `train_source` with `config.strategy` and write everything to `run_dir`.

    When `val_source` is None a stratified `config.val_fraction` of the training data is held out.
    Unreadable images are dropped before training (the run stops if they exceed `config.max_bad_fraction`).
    ``strategy: auto`` is decided before this is called (`transferkit.advise.resolve_auto`).

    Args:
        resume: Continue the interrupted run in `run_dir` from its `last` training state, exactly where it
            stopped (same sample order, RNG states, optimiser). True reads `last`, falling back to `last.prev`
            with a warning when `last` is damaged; a path to one file of a checkpoint set reads that set only.
        listeners: Called after each epoch with its metrics.jsonl row, each parameter group's learning rate and
            the validation confusion matrix (experiment loggers, `transferkit.tracking`).
    """
    start = time.perf_counter()
    if config.strategy == "auto":
        raise ValueError("strategy auto is decided from the data first: call transferkit.advise.resolve_auto")
    strategy = get_strategy(config.strategy)
    config = config.with_recipe(len(train_source))  # batch size, augmentation... for this much data
    if strategy.classical:
        return _classical_run(config, strategy, train_source, val_source, run_dir, start)
    session = open_session(config, run_dir, resume, start)
    config = resumed_config(config, session.point)  # what a resume cannot change is the interrupted run's
    data = prepare_data(config, session, train_source, val_source)
    run_model = setup_model(config, strategy, session, data)
    settings = step_settings(config, strategy, session, run_model, data)
    if config.lr == AUTO_LR:
        config = auto_lr(config, strategy, session, data, run_model, settings)
    phases = strategy.phases(config)
    check_fits(config, session, run_model, phases)
    meta, plan = write_run_files(config, session, data, run_model, phases[0])
    tracker, history = setup_tracker(config, session, data, run_model.model, meta)
    tracker.listeners = list(listeners or [])

    runner = run_phases(config, session, data, run_model, settings, tracker, phases)

    history += runner.history
    plan = runner.plan or plan  # the last phase's plan decides what trained
    result = RunResult(
        session.run.path, tracker.best_acc, tracker.best_epoch, history, time.perf_counter() - start,
        plan.trainable_params, plan.frozen_params, tracker.stopped, tracker.best_score,
    )  # fmt: skip
    summary = {
        "best_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "select_by": config.select_by,
        "best_val_score": tracker.best_score,
        "seconds": result.seconds,
        "trainable_params": result.trainable_params,
        "frozen_params": result.frozen_params,
        "stopped_early": result.stopped_early,
        "device": str(session.device),
        "skipped_images": len({p for p, _ in data.check.bad_images} | runner.loaders.unreadable),
        "skipped_steps": sum(r.skipped_steps for r in history),
    }
    if runner.prefix_cache is not None:
        summary["prefix_cache"] = runner.prefix_cache
    if session.point is not None:
        summary["resumed_from"] = {"checkpoint": session.point.stem.name, **session.point.meta.get("resume", {})}
    if session.dist.is_main:
        session.run.write_json("summary.json", summary)
    console.print(
        f"best val acc {100 * tracker.best_acc:.2f}% at epoch {tracker.best_epoch}; run saved to {session.run.path}"
    )
    return result


def auto_lr(
    config: TrainConfig,
    strategy: Strategy,
    session: Session,
    data: RunData,
    run_model: RunModel,
    settings: StepSettings,
) -> TrainConfig:
    """`config` with ``lr: auto`` replaced by the range test's suggestion, saved as ``lr_find.json`` in the run.

    A resumed run takes the rate its interrupted part chose; a strategy without a learning rate (an L-BFGS probe)
    takes the default.
    """
    if session.point is not None:
        saved = session.point.meta["config"].get("lr")
        return replace(config, lr=saved if saved != AUTO_LR else None)
    try:
        found = range_test(config, strategy, data, run_model, settings, kernels=session.kernels)
    except LrFindError as exc:
        console.print(f"lr auto: {exc}; training with the default rate")
        return replace(config, lr=None)
    lr = float(session.dist.broadcast(found.suggestion))  # every process trains at rank 0's rate
    if session.dist.is_main:
        session.run.write_json("lr_find.json", found.to_dict())
    console.print(f"lr auto: training with --lr {lr:.2e} (saved in config.yaml; the curve in lr_find.json)")
    return replace(config, lr=lr)


def _classical_run(config, strategy, train_source, val_source, run_dir, start: float) -> RunResult:
    """A strategy that fits classical models instead of training a network (`transferkit.baselines`)."""
    from transferkit.baselines import run_baseline

    outcome = run_baseline(config, strategy, train_source, val_source, run_dir)
    chosen = outcome.baselines.chosen
    return RunResult(
        outcome.run_dir, chosen.val_acc, 0, [], time.perf_counter() - start, outcome.parameters,
        best_val_score=chosen.val_score,
    )  # fmt: skip


def run_phases(
    config: TrainConfig,
    session: Session,
    data: RunData,
    run_model: RunModel,
    settings: StepSettings,
    tracker: Tracker,
    phases: list[Phase],
    *,
    features: Callable[[], tuple[torch.Tensor, ...]] | None = None,
) -> PhaseRunner:
    """Train `phases` in order (skipping what a resumed run had finished); Ctrl-C saves and stops.

    Args:
        features: For probe phases: (train features, labels, val features, labels) instead of the model's
            backbone run over the images (a model file cut at a node provides its own).

    Returns:
        The phase runner: its `history`, the last freezing `plan`, and the prefix cache it used.
    """
    seconds = parse_duration(config.time_budget) if config.time_budget else None
    budget = TimeBudget(session.start, seconds, session.run, resumed=session.resumed)
    runner = PhaseRunner(config, session, data, run_model, settings, tracker, budget, features=features)
    with catch_interrupts(tracker):
        try:
            for index, phase in enumerate(phases):
                if tracker.stopped:
                    break
                if not runner.done_before(index, phase):
                    runner.history += runner.run(index, phase, final=phases[-1])
        finally:
            runner.close()
    return runner
