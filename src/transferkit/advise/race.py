"""``strategy: auto`` measures: short trials of the candidate strategies race on the validation split.

The advisor's rules and LogME are the prior: they order the candidates, prune the ones the measurements rule out
(a from-scratch run beside pretrained weights; `partial` when the final features are the best stage) and set the
learning rates every trial uses. Then the race, by successive halving:

1. The candidates whose score does not grow with epochs run once: the classical baseline, and a probe whose head is
   solved by L-BFGS on cached features. Their validation accuracy is the bar.
2. The fine-tuning candidates train a short schedule each (the first rung, a quarter of the final epochs); the
   better half goes on to a schedule twice as long, and so on until one is left, which trains the whole
   schedule. Every trial is an ordinary run (its own cosine schedule) in ``RUN/race/<strategy>-<epochs>ep/``; its
   weights are deleted once it is scored, its curves are kept.
3. The winner is the candidate with the best validation figure, the fine-tuner at its whole schedule. The figure is
   accuracy, or the ``select_by`` figure when predictions give it (macro-F1 on imbalanced classes: the baseline's
   models are chosen by it too); ``select_by loss`` picks each trial's epoch, and the race compares accuracy, since
   a classical model has no loss. A tie goes
   to the cheaper candidate (the baseline, then a probe that runs once, then a fine-tuner), and between equals
   to the prior's order: transfer has to beat the baseline to be chosen over it. The run then trains the winner.

With ``--time-budget`` the race spends at most `RACE_SHARE` of it (a trial that its predecessor's pace says would
not fit is not started) and the final run gets the rest. Without one, the rungs come from the epochs the winner
will train (`rungs_for`). The winner's trial of its whole plan is the same computation as the run would be when no
time budget, early stopping or experiment logger changes it: then `resolve_auto` takes that trial as the run
instead of training it again. Everything is recorded in ``advice.json`` (``race``), printed, and shown in the
report.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from transferkit._console import console
from transferkit.config import TrainConfig, parse_duration
from transferkit.data import ImageSource
from transferkit.evaluate.metrics import figure_for
from transferkit.strategies import compare_defaults, get_strategy, strategy_names

__all__ = [
    "FINALISTS",
    "NOISE_MARGIN",
    "RACE_DIR",
    "RACE_SHARE",
    "Entrant",
    "Race",
    "Trial",
    "adopt_winning_trial",
    "choose_winner",
    "plan_race",
    "rungs_for",
    "run_race",
    "trial_plan",
]

RACE_DIR = "race"
RACE_SHARE = 0.4
"""Share of ``--time-budget`` the race may spend; the winner's final run gets what is left."""
FINALISTS = 1
"""Fine-tuners that train the whole schedule after the screens (`rungs_for`)."""
NOISE_MARGIN = 0.0
"""Standard errors by which a costlier candidate must beat a cheaper one on validation to win (`choose_winner`)."""
_WEIGHT_FILES = ("*.safetensors", "*.pt")


@dataclass
class Trial:
    """One short run of a candidate: its schedule, validation curve and cost."""

    epochs: int | None
    """Epochs trained (None for the classical baseline)."""
    val_acc: float
    seconds: float
    curve: list[float] = field(default_factory=list)
    """Validation accuracy after each epoch."""
    run_dir: str = ""
    score: float | None = None
    """The race's figure (`Race.metric`) at the best epoch when it is not accuracy; None: `val_acc` is it."""

    def describe(self, metric: str) -> str:
        """``4 ep: 85.00%``, and the race's figure beside the accuracy when that is another: ``(macro-f1 75.00%)``."""
        epochs = "" if self.epochs is None else f"{self.epochs} ep: "
        return (
            epochs + f"{100 * self.val_acc:.2f}%" + ("" if self.score is None else f" ({_figure(metric, self.score)})")
        )


@dataclass
class Entrant:
    """A candidate strategy in the race."""

    strategy: str
    why: str
    """Why the prior let it race."""
    freeze: int | None = None
    fixed: bool = False
    """Its score does not grow with epochs (a classical model, an L-BFGS probe): it runs once."""
    trials: list[Trial] = field(default_factory=list)
    dropped: str | None = None
    """Why it stopped racing (None: still in, or the winner)."""

    @property
    def score(self) -> float | None:
        """The race's figure of its last trial."""
        if not self.trials:
            return None
        last = self.trials[-1]
        return last.val_acc if last.score is None else last.score

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.trials)


@dataclass
class Race:
    """The whole race: who ran, on which schedule, why each one stopped, and the winner."""

    entrants: list[Entrant]
    pruned: dict[str, str]
    """Strategies the prior kept out, with the reason."""
    rungs: list[int]
    """Epochs of the fine-tuners' trials, rung by rung."""
    final_epochs: int
    budget_seconds: float | None
    budget_note: str
    winner: str | None = None
    seconds: float = 0.0
    winner_run: str | None = None
    """The winner's trial that trained its whole plan, relative to the run directory (its weights are kept, so the
    run can take it as its own instead of training it again); None when its last trial was shorter."""
    metric: str = "accuracy"
    """The validation figure the race ranks by (`evaluate.metrics.figure_for` of the plans' ``select_by``)."""
    val_images: int | None = None
    """Images of the validation split the trials were scored on (None: not recorded)."""

    def entrant(self, strategy: str) -> Entrant:
        return next(e for e in self.entrants if e.strategy == strategy)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Race:
        entrants = [
            Entrant(e["strategy"], e["why"], e.get("freeze"), e.get("fixed", False),
                    [Trial(**t) for t in e.get("trials", [])], e.get("dropped"))
            for e in data["entrants"]
        ]  # fmt: skip
        return cls(
            entrants, dict(data.get("pruned", {})), list(data["rungs"]), int(data["final_epochs"]),
            data.get("budget_seconds"), data.get("budget_note", ""), data.get("winner"), float(data.get("seconds", 0)),
            data.get("winner_run"), data.get("metric", "accuracy"), data.get("val_images"),
        )  # fmt: skip

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(strategy, trials as epochs: val acc [and the race's figure], seconds, outcome, why it raced) for the
        console and the report."""
        out = []
        for e in self.entrants:
            trials = ", ".join(t.describe(self.metric) for t in e.trials)
            outcome = "winner" if e.strategy == self.winner else (e.dropped or "not run")
            out.append((e.strategy, trials or "-", f"{e.seconds:.1f}", outcome, e.why))
        return out

    def explain(self) -> str:
        """The race as plain text: the schedule, one line per candidate, what the prior kept out."""
        lines = [f"race: {self.budget_note}"]
        for strategy, trials, seconds, outcome, _ in self.rows():
            lines.append(f"  {strategy:<14} {trials:<40} {seconds:>7} s  {outcome}")
        lines += [f"  {name}: not raced ({why})" for name, why in self.pruned.items()]
        lines.append(f"race: {self.winner} won in {self.seconds:.0f} s")
        return "\n".join(lines)


def rungs_for(final_epochs: int, fine_tuners: int, finalists: int | None = None) -> list[int]:
    """Epochs of each rung: short screening rungs that halve the field to `finalists`, then the whole schedule.

    The screens train a quarter of the final epochs, then an eighth, ... (at least 2); the fine-tuners left (at
    most `finalists`, default `FINALISTS`) train the whole schedule, so they are judged on the figure they will
    reach, beside the once-run candidates.

    Example:
        >>> rungs_for(12, 3, 1), rungs_for(6, 2, 1), rungs_for(6, 1, 1), rungs_for(2, 2, 1), rungs_for(6, 2, 2)
        ([2, 3, 12], [2, 6], [6], [2], [6])
    """
    finalists = FINALISTS if finalists is None else max(1, finalists)
    if fine_tuners <= 0:
        return []
    halvings = math.ceil(math.log2(fine_tuners / finalists)) if fine_tuners > finalists else 0
    screens = {max(min(2, final_epochs), final_epochs // 2 ** (k + 1)) for k in range(1, halvings + 1)}
    return sorted(r for r in screens if r < final_epochs) + [final_epochs]


def plan_race(advice, config: TrainConfig) -> tuple[list[Entrant], dict[str, str]]:
    """The prior: which strategies race, in which order, and which the measurements rule out (with why).

    Args:
        advice: The advisor's `Advice` (its strategy, alternatives, similarity and partial depth).
        config: The run's settings (a probe is `fixed` when its head is solved by L-BFGS on cached features).
    """
    from transferkit.advise.advice import partial_depth

    pretrained = advice.regime != "no-pretrained-weights"
    order = [advice.strategy, *advice.alternatives, *compare_defaults()]
    order += [n for n in strategy_names() if get_strategy(n).uses_depth]
    entrants, pruned, seen = [], {}, set()
    for name in order:
        if name in seen or name not in strategy_names():
            continue
        seen.add(name)
        s = get_strategy(name)
        if s.classical:
            entrants.append(Entrant(name, "the bar: what no transfer gets", fixed=True))
            continue
        if pretrained and not s.pretrained:
            pruned[name] = "pretrained weights are there; from random weights only pays off with long schedules"
            continue
        if not pretrained and s.pretrained:
            pruned[name] = f"{advice.measurements.backbone if advice.measurements else 'the backbone'} has no "
            pruned[name] += "pretrained weights"
            continue
        if s.uses_depth and advice.similarity != "different":
            pruned[name] = "the final features are the best stage (LogME), so there is no depth to keep frozen"
            continue
        why = (
            f"the advisor's plan ({advice.regime})" if name == advice.strategy
            else "the advisor's alternative" if name in advice.alternatives else "a default of compare"
        )  # fmt: skip
        freeze = None
        if s.uses_depth:
            stages = advice.measurements.stage_logme if advice.measurements is not None else None
            freeze = config.freeze or advice.freeze or (partial_depth(stages) if stages else 1)
        fixed = not s.fine_tunes and config.feature_cache and config.head_solver == "lbfgs"
        entrants.append(Entrant(name, why, freeze, fixed))
    return entrants, pruned


TrainFn = Callable[[TrainConfig, Path], tuple[float, list[float], float | None]]
"""Trains `config` in a run directory; returns the best epoch's validation accuracy, the per-epoch accuracy curve,
and the run's ``best_val_score`` (its ``select_by`` figure)."""


def run_race(
    advice,
    config: TrainConfig,
    train: ImageSource,
    val: ImageSource | None,
    run_dir: str | Path,
    *,
    train_fn: TrainFn | None = None,
) -> Race:
    """Race the candidates on the validation split; returns the `Race` with its winner.

    Args:
        advice: The advisor's `Advice` for this data.
        config: The user's config (strategy ``auto``): each trial runs `Advice.apply` of its strategy's plan, so
            the fields the user set are kept and the advised rates, size and epochs fill the rest.
        train: Training images (validation is split off as the final run will, unless `val` is given).
        val: Validation images, or None.
        run_dir: The run directory; trials go to ``run_dir/race/``.
        train_fn: How a trial trains (default `train_run`); tests substitute a cheaper one.
    """
    started = time.perf_counter()
    entrants, pruned = plan_race(advice, config)
    tuners = [e for e in entrants if not e.fixed]
    plans = {e.strategy: advice.with_strategy(e.strategy, e.freeze).apply(config) for e in entrants}
    final_epochs = plans[tuners[0].strategy].epochs if tuners else plans[entrants[0].strategy].epochs
    rungs = rungs_for(final_epochs, len(tuners))
    metric = figure_for(plans[entrants[0].strategy].select_by)
    budget = parse_duration(config.time_budget) * RACE_SHARE if config.time_budget else None
    if budget is not None:
        note = f"within {budget:.0f} s ({RACE_SHARE:.0%} of --time-budget {config.time_budget})"
    else:
        schedule = ", ".join(map(str, rungs)) or "-"
        note = f"no --time-budget: rungs of {schedule} epochs (screens, then the whole schedule)"
    if metric != "accuracy":
        note += f"; ranked by validation {metric}"
    race = Race(entrants, pruned, rungs, final_epochs, budget, note, metric=metric)
    console.print(f"strategy auto: racing {', '.join(e.strategy for e in entrants)}; {note}", highlight=False)

    def shown(e: Entrant) -> str:
        return _figure(metric, e.score)

    train_fn = train_fn or _train_trial(train, val)
    root = Path(run_dir) / RACE_DIR

    whole: list[Path] = []  # trials of a whole plan: the winner's may become the run, so their weights wait

    def trial(entrant: Entrant, epochs: int | None) -> None:
        classical = get_strategy(entrant.strategy).classical
        trial_config = trial_plan(plans[entrant.strategy], epochs)
        path = root / (entrant.strategy if entrant.fixed else f"{entrant.strategy}-{epochs}ep")
        console.rule(f"race: {entrant.strategy}" + ("" if entrant.fixed else f", {epochs} epochs"))
        began = time.perf_counter()
        try:
            acc, curve, best_score = train_fn(trial_config, path)
        except Exception as exc:  # a candidate that breaks leaves the race; the others go on
            entrant.dropped = f"failed: {type(exc).__name__}: {exc}"
            console.print(f"[yellow]race:[/yellow] {entrant.strategy} failed: {exc}", highlight=False)
            return
        finally:
            if entrant.fixed or epochs == final_epochs:
                whole.append(path)
            else:
                _drop_weights(path)
        ran = None if classical else trial_config.epochs
        score = None if metric == "accuracy" or best_score is None else float(best_score)
        where = path.relative_to(run_dir).as_posix()
        if race.val_images is None and (path / "data.json").is_file():  # every trial validates on the same split
            race.val_images = int(json.loads((path / "data.json").read_text())["val"]["n_images"])
        entrant.trials.append(Trial(ran, acc, time.perf_counter() - began, curve, where, score))

    for entrant in [e for e in entrants if e.fixed]:
        trial(entrant, None)
    alive = list(tuners)
    for k, epochs in enumerate(rungs):
        out_of_time = False
        for entrant in alive:
            left = None if budget is None else budget - (time.perf_counter() - started)
            need = _estimate(entrant, epochs)
            if left is not None and need is not None and need > left:
                out_of_time = True  # it keeps the score of its last trial
                console.print(f"race: {entrant.strategy} at {epochs} epochs would take ~{need:.0f} s; "
                              f"{max(0.0, left):.0f} s of the race are left", highlight=False)  # fmt: skip
                continue
            trial(entrant, epochs)
        alive = [e for e in alive if e.dropped is None and e.trials]
        if out_of_time:
            race.budget_note += f"; stopped at rung {k + 1} ({epochs} epochs): the budget was spent"
            break
        if k + 1 < len(rungs) and len(alive) > 1:
            keep = math.ceil(len(alive) / 2)
            ranked = sorted(alive, key=lambda e: -_score(e))  # stable: ties keep the prior's order
            cut = ranked[keep - 1]
            for e in ranked[keep:]:
                e.dropped = f"rung {k + 1} ({epochs} ep): {shown(e)}, below the best {keep} ({shown(cut)} and up)"
                if _score(e) == _score(cut):
                    e.dropped = f"rung {k + 1} ({epochs} ep): tied at the cut ({shown(e)}); the prior ranks "
                    e.dropped += f"{', '.join(c.strategy for c in ranked[:keep])} first"
            alive = ranked[:keep]
    scored = [e for e in entrants if e.dropped is None and e.trials]
    if not scored:
        raise RuntimeError("strategy auto: every candidate of the race failed; see the messages above")
    winner = choose_winner(scored, race.val_images)
    for e in scored:
        if e is not winner:
            e.dropped = f"{shown(e)}, below {winner.strategy}'s {shown(winner)}"
            if _score(e) == _score(winner):
                e.dropped = f"tied with {winner.strategy} at {shown(e)}, which costs less"
                if _cost(e) == _cost(winner):
                    e.dropped = f"tied with {winner.strategy} at {shown(e)}, which the prior ranks first"
            elif _score(e) > _score(winner):
                noise = 100 * _noise(e, winner, race.val_images)
                e.dropped = f"{shown(e)}, above {winner.strategy}'s {shown(winner)} by less than the validation noise "
                e.dropped += f"({NOISE_MARGIN:g} standard error: {noise:.1f} points on {race.val_images} images), "
                e.dropped += "and it costs more"
    race.winner = winner.strategy
    last = winner.trials[-1]
    if winner.fixed or last.epochs == final_epochs:
        race.winner_run = last.run_dir
    for path in whole:
        if path.relative_to(run_dir).as_posix() != race.winner_run:
            _drop_weights(path)
    race.seconds = time.perf_counter() - started
    return race


def choose_winner(scored: list[Entrant], val_images: int | None, margin: float | None = None) -> Entrant:
    """The best candidate, unless a cheaper one is within the validation noise of it: then the cheapest such.

    The noise is `margin` (default `NOISE_MARGIN`) standard errors of the difference of the two figures, as
    accuracies on `val_images` images would have (``sqrt((p(1 - p) + q(1 - q)) / n)``): the one-standard-error
    rule, which prefers the simpler model that the data cannot tell from the best. Without `val_images` (or at
    margin 0) it is the best, ties going to the cheaper and then to the prior's order.
    """
    margin = NOISE_MARGIN if margin is None else margin
    best = max(scored, key=lambda e: (_score(e), -_cost(e)))  # max keeps the first of equals: the prior's order
    if not val_images or margin <= 0:
        return best
    near = [
        e for e in scored if _cost(e) < _cost(best) and _score(best) - _score(e) <= margin * _noise(e, best, val_images)
    ]
    return max(near, key=lambda e: (-_cost(e), _score(e))) if near else best


def _noise(a: Entrant, b: Entrant, n: int) -> float:
    """Standard error of the difference of two figures measured on the same `n` validation images."""
    p, q = (min(1.0, max(0.0, e.score)) for e in (a, b))
    return math.sqrt((p * (1 - p) + q * (1 - q)) / n)


def _figure(metric: str, value: float) -> str:
    """``85.00%`` for accuracy, ``macro-f1 75.00%`` for another figure."""
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{metric} {100 * value:.2f}%"


def _score(entrant: Entrant) -> float:
    """The race's figure, rounded so that 18/20 from one pipeline ties 18/20 from another."""
    return round(entrant.score, 6)


def _cost(entrant: Entrant) -> int:
    """0 for the classical baseline, 1 for a probe that runs once, 2 for a fine-tuner: a tie goes to the cheaper,
    so transfer has to beat the baseline on validation to be chosen over it."""
    return 0 if get_strategy(entrant.strategy).classical else 1 if entrant.fixed else 2


def trial_plan(plan: TrainConfig, epochs: int | None) -> TrainConfig:
    """A strategy's plan as a trial: `epochs` (None: the plan's), no budget, checkpoints, trackers or early stop."""
    epochs = plan.epochs if epochs is None else epochs
    lp_epochs = plan.lp_epochs if plan.lp_epochs is not None and plan.lp_epochs < epochs else None
    return replace(
        plan, epochs=epochs, lp_epochs=lp_epochs, time_budget=None, checkpoint_every_steps=0, log=None, patience=None
    )


def adopt_winning_trial(race: Race, applied: TrainConfig, run_dir: Path) -> str | None:
    """Copy the winner's whole-plan trial into the run directory when it is the run's own computation; its path, or
    None when the run must train (the trial's weights are deleted either way).

    A trial runs its plan without mid-epoch checkpoints (which change nothing that trains), a time budget, early
    stopping or experiment loggers; when the run's settings have none of those either, training again would repeat
    it step for step, so its files are the run's.
    """
    if race.winner_run is None:
        return None
    trial = run_dir / race.winner_run
    same = trial_plan(applied, None) == replace(applied, checkpoint_every_steps=0)
    if same and (trial / "summary.json").is_file():
        shutil.copytree(trial, run_dir, dirs_exist_ok=True)
    _drop_weights(trial)  # the race keeps its curves; the weights live in the run, or the run trains its own
    return race.winner_run if same and (run_dir / "summary.json").is_file() else None


def _estimate(entrant: Entrant, epochs: int) -> float | None:
    """Seconds a longer trial should take, from the pace of this entrant's last one (None before its first)."""
    last = next((t for t in reversed(entrant.trials) if t.epochs), None)
    return None if last is None else last.seconds * epochs / last.epochs


def _train_trial(train: ImageSource, val: ImageSource | None) -> TrainFn:
    def run(config: TrainConfig, path: Path) -> tuple[float, list[float], float | None]:
        from transferkit.train.runner import train_run

        result = train_run(config, train, val, run_dir=path)
        return float(result.best_val_acc), [float(epoch.val_acc) for epoch in result.history], result.best_val_score

    return run


def _drop_weights(path: Path) -> None:
    """A scored trial keeps its curves and summary; its weights are not needed again."""
    if not path.is_dir():
        return
    for pattern in _WEIGHT_FILES:
        for file in path.rglob(pattern):
            file.unlink()
