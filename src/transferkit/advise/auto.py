"""``strategy: auto``: advise on the training data, race the candidates, then train the winner; the run saves both."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from transferkit._console import console
from transferkit.config import TrainConfig, parse_duration
from transferkit.data import ImageSource

if TYPE_CHECKING:
    from transferkit.train.runner import RunResult

__all__ = ["ADVICE_FILE", "ADVISED_SETTINGS", "resolve_auto", "reused_run", "what_runs"]

ADVICE_FILE = "advice.json"
ADVISED_SETTINGS = ("lr", "head_lr_mult", "scratch_lr_mult", "epochs", "image_size", "class_weights", "select_by")
"""The advised training settings a user's own value replaces (strategy and depth are the plan itself)."""


def resolve_auto(
    config: TrainConfig,
    source: ImageSource,
    run_dir: str | Path,
    *,
    val: ImageSource | None = None,
    resume: bool = False,
) -> TrainConfig:
    """The config with the chosen plan in place of ``strategy: auto``; writes ``advice.json`` to `run_dir`.

    The advisor measures the data and proposes a plan; unless ``config.race`` is off, short trials of the candidates
    then race on the validation split (`transferkit.advise.race`) and the winner's plan is what trains. Fields the
    user set (anything not at its default) are kept. With a time budget, the final run gets what the race left of
    it. When resuming a run that was advised before, its saved plan is reused rather than measured (and raced)
    again, so the resumed run trains the same way.

    Args:
        config: A config whose strategy is ``auto``.
        source: The training data (train and validation together when validation is split off later).
        run_dir: The run directory; ``advice.json`` (and the race's trials, ``race/``) are written there.
        val: Validation images, when they are given apart from `source`.
        resume: The run continues an interrupted one.
    """
    from transferkit.advise import advise
    from transferkit.advise.race import adopt_winning_trial, run_race
    from transferkit.train.setup import resolve_device

    started = time.perf_counter()
    path = Path(run_dir) / ADVICE_FILE
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        plan = {k: saved[k] for k in ("strategy", "freeze")}
        if saved.get("final_time_budget"):
            plan["time_budget"] = saved["final_time_budget"]
        console.print(f"strategy auto: reusing the saved advice ({plan['strategy']})")
        return TrainConfig.from_dict({**config.to_dict(), **plan})
    device = resolve_device(config.device)
    advice = advise(source, config.backbone, image_size=config.image_size, optimizer=config.optimizer, device=device)
    console.print(advice.explain(), highlight=False, markup=False)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    chosen, race = advice, None
    if config.race:
        race = run_race(advice, config, source, val, run_dir)
        console.print(race.explain(), highlight=False, markup=False)
        chosen = advice.with_strategy(race.winner, race.entrant(race.winner).freeze)
    applied = chosen.apply(config)
    if race is not None and config.time_budget:
        left = parse_duration(config.time_budget) - (time.perf_counter() - started)
        applied = replace(applied, time_budget=f"{max(1.0, left):.0f}s")
        console.print(f"strategy auto: {applied.time_budget} of --time-budget {config.time_budget} left to train")
    reused = adopt_winning_trial(race, applied, Path(run_dir)) if race is not None else None
    saved = advice.to_dict() | {
        "strategy": chosen.strategy,
        "freeze": chosen.freeze,
        "epochs": chosen.epochs,
        "rule_strategy": advice.strategy,
        "race": race.to_dict() if race is not None else None,
        "final_time_budget": applied.time_budget if race is not None else None,
        "reused_trial": reused,
    }
    path.write_text(json.dumps(saved, indent=2, default=str))
    console.print(what_runs(chosen, applied, rule=advice.strategy), highlight=False, markup=False)
    if reused:
        console.print(f"strategy auto: the race's trial {reused} trained this plan already; it is the run")
    return applied


def reused_run(run_dir: str | Path) -> RunResult | None:
    """The result of an auto run whose race's winning trial became the run (`resolve_auto`), or None.

    The caller trains the plan `resolve_auto` returned only when this is None.
    """
    from transferkit.train.loop import EpochResult
    from transferkit.train.rundir import RunDir
    from transferkit.train.runner import RunResult

    run = Path(run_dir)
    advice, summary = run / ADVICE_FILE, run / "summary.json"
    if not (advice.is_file() and summary.is_file()) or not json.loads(advice.read_text()).get("reused_trial"):
        return None
    done = json.loads(summary.read_text())
    history = [EpochResult.from_row(row) for row in RunDir(run).metrics()]
    return RunResult(
        run, float(done["best_val_acc"]), int(done.get("best_epoch", 0)), history, float(done.get("seconds", 0.0)),
        int(done.get("trainable_params", 0)), int(done.get("frozen_params", 0)), bool(done.get("stopped_early")),
        done.get("best_val_score"),
    )  # fmt: skip


def what_runs(advice, applied: TrainConfig, rule: str | None = None) -> str:
    """One line saying what will train: the chosen plan, and every advised setting the user's value replaces.

    The explanation above it gives the advice as measured (say 30 epochs); a field the user set (``--epochs 2``)
    is kept, so this line says that 2 run, not 30. `rule` is the advisor's rule-based strategy, named when the race
    chose another.
    """
    yours = [
        f"{name} {_show(getattr(applied, name))} (yours; advised {_show(getattr(advice, name))})"
        for name in ADVISED_SETTINGS
        if getattr(applied, name) != getattr(advice, name)
    ]
    head = f"strategy auto: training {applied.strategy}" + (f" --freeze {applied.freeze}" if applied.freeze else "")
    if rule is not None and rule != applied.strategy:
        head += f" (it won the race; the advisor's rule said {rule})"
    return head + (" with " + ", ".join(yours) if yours else " as advised")


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)
