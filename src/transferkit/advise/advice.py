"""The fine-tuning decision: dataset size x similarity to the pretraining data, from measured numbers.

The rule is the classic 2 x 2 of transfer learning:

=========  ==================================  ==========================================
           similar (frozen features fit)        different (they do not)
=========  ==================================  ==========================================
small      ``linear-probe``: train the head     ``partial``: freeze the stages whose features
           only; there is too little data to    still help (per-stage LogME), retrain the rest
           move millions of weights safely
large      ``lp-ft``: probe, then fine-tune     ``full``: every layer trains, starting from the
           everything from that head            pretrained weights (``scratch`` only pays off
                                                 with long schedules)
=========  ==================================  ==========================================

Both axes are measured (`measure`): *size* is the number of images in the smallest class; *similarity*
has two signals, both from frozen features. The chance-normalised accuracy of a cross-validated linear
probe says whether the final features already separate the classes; the per-stage LogME says whether
the final features are the best ones the backbone has: when an earlier stage scores higher, the last
stages have specialised in something the data does not need. The thresholds are the ones that separate
the datasets of ``bench/advisor.py`` (results in BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from transferkit.advise.measure import Measurements
from transferkit.config import DEFAULT_LR, TrainConfig
from transferkit.strategies import Strategy, get_strategy, strategy_names

__all__ = ["THRESHOLDS", "Advice", "decide", "partial_depth"]

THRESHOLDS = {
    "small_per_class": 100,
    "similar_probe_gain": 0.4,
    "similar_depth_drop": 0.05,
}
"""The decision's thresholds.

small_per_class: fewer images than this in the smallest class is "small". In the README demo's table a
    linear probe matched full fine-tuning at 80 training images per class of Fashion-MNIST; in
    bench/advisor.py `full` was best or within 0.5 points at 120 per class in 4 of 4 cases.
similar_probe_gain: a linear probe on the frozen final features must reach at least this fraction of the
    way from chance to perfect accuracy (Fashion-MNIST with EfficientNet-Lite0 at 48 px measures 0.54 at
    10 images per class and 0.76 at 60; a generated spatial-relation set 0.24).
similar_depth_drop: the final features' LogME may lie at most this far (nats per image) below the best
    stage's (Fashion-MNIST at 48 px: 0, LogME rises stage by stage; the generated tile textures peak in the
    middle of the network, 0.25 above the final features).

All three were fixed from measurements before bench/advisor.py trained anything; BENCHMARKS.md
("Strategy advisor") has how often the resulting advice was right, and where it was wrong.
"""

_LR_SCALE = 3.0
"""Advised pretrained-layer rate over the config default (AdamW 1e-4 -> 3e-4): the default is tuned for
long schedules; in the README demo 1e-4 left full fine-tuning at 72% after 6 epochs."""
_HEAD_LR_MULT = 10.0
_SCRATCH_LR_MULT = 10.0
"""Pretrained layers get a tenth of the from-scratch rate; the new head learns at the from-scratch rate."""
_TARGET_STEPS = 300
_PROBE_EPOCHS = 20
_IMBALANCE = 10.0
"""Largest over smallest class above which the plan weights the loss and picks the checkpoint by macro F1: in
BENCHMARKS.md ("Class imbalance") a 40:1 long-tailed Fashion-MNIST gained macro F1 and worst-class recall from it."""
_ADVISED_FIELDS = (
    "strategy", "freeze", "lr", "head_lr_mult", "scratch_lr_mult", "epochs", "image_size", "class_weights", "select_by",
)  # fmt: skip


@dataclass
class Advice:
    """A fine-tuning plan with the measurements and reasons behind it.

    Example:
        >>> from transferkit.advise import Measurements, decide
        >>> m = Measurements("efficientnet_lite0", True, n_images=100, n_classes=10, min_per_class=10,
        ...                  median_per_class=10, imbalance=1.0, probe_acc=0.6, probe_gain=0.56,
        ...                  stage_logme=[-0.2, -0.1, 0.03], stage_names=["stem", "blocks", "head"], logme=0.03)
        >>> decide(m).strategy
        'linear-probe'

    Attributes:
        regime: ``<size>-<similarity>``, e.g. ``small-similar``; ``no-pretrained-weights`` without weights.
        size: small or large.
        similarity: similar, different, or unknown (no pretrained weights).
        strategy: The advised strategy.
        freeze: For `partial`: the number of leading stages to freeze.
        lr: Learning rate of pretrained layers.
        head_lr_mult: The new head's rate over `lr`.
        scratch_lr_mult: A from-scratch run's rate over `lr`.
        epochs: Suggested epochs.
        image_size: Suggested input size in pixels (the size the features were measured at).
        alternatives: Runner-up strategies worth comparing.
        reasons: The explanation, one sentence per line, naming the numbers and thresholds.
        measurements: What the decision was made from.
        thresholds: The thresholds it used.
        class_weights: ``balanced`` when the classes are imbalanced beyond 10:1, else ``none``.
        select_by: The figure that picks the best checkpoint (``macro-f1`` on imbalanced classes).
    """

    regime: str
    size: str
    similarity: str
    strategy: str
    freeze: int | None
    lr: float
    head_lr_mult: float
    scratch_lr_mult: float
    epochs: int
    image_size: int
    alternatives: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    measurements: Measurements | None = None
    thresholds: dict = field(default_factory=lambda: dict(THRESHOLDS))
    class_weights: str = "none"
    select_by: str = "accuracy"

    def explain(self) -> str:
        """The plan and its reasons as plain text."""
        plan = f"{self.strategy}" + (f" --freeze {self.freeze}" if self.freeze is not None else "")
        if not get_strategy(self.strategy).pretrained:
            scratch = self.lr * self.scratch_lr_mult
            rates = f"lr {scratch:g} for every layer (--lr {self.lr:g} x{self.scratch_lr_mult:g})"
        else:
            rates = f"lr {self.lr:g} for pretrained layers, head x{self.head_lr_mult:g}"
        lines = [f"regime: {self.regime}  ->  strategy {plan}"]
        lines.append(f"  {rates}, {self.epochs} epochs at {self.image_size} px")
        if self.class_weights != "none" or self.select_by != "accuracy":
            lines.append(f"  --class-weights {self.class_weights} --select-by {self.select_by}")
        lines += [f"  - {reason}" for reason in self.reasons]
        if self.alternatives:
            lines.append(f"  worth comparing: {', '.join(self.alternatives)}")
        return "\n".join(lines)

    def apply(self, config: TrainConfig) -> TrainConfig:
        """`config` with the plan filled in; fields the user set (not at their defaults) are kept.

        The strategy is always the advised one; `freeze` only applies to `partial` without freeze_modules.
        """
        defaults = TrainConfig()
        changes: dict = {"strategy": self.strategy, "freeze": config.freeze}
        for name in _ADVISED_FIELDS[2:]:
            if getattr(config, name) == getattr(defaults, name):
                changes[name] = getattr(self, name)
        if get_strategy(self.strategy).uses_depth and config.freeze is None and not config.freeze_modules:
            changes["freeze"] = self.freeze
        if config.lp_epochs is not None and config.lp_epochs >= changes.get("epochs", config.epochs):
            changes["lp_epochs"] = None
        return replace(config, **changes)

    def with_strategy(self, strategy: str, freeze: int | None = None) -> Advice:
        """This plan for another strategy (a race's winner): its depth, and the epochs the advisor gives it."""
        if strategy == self.strategy and freeze == self.freeze:
            return self
        chosen = get_strategy(strategy)
        n_train = self.measurements.n_images if self.measurements is not None else 0
        epochs = _epochs(n_train) if chosen.fine_tunes else _PROBE_EPOCHS
        return replace(self, strategy=strategy, freeze=freeze if chosen.uses_depth else None, epochs=epochs)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measurements"}
        data["measurements"] = self.measurements.to_dict() if self.measurements is not None else None
        return data


def decide(m: Measurements, optimizer: str = "adamw") -> Advice:
    """Turn measurements into a plan: regime, strategy, depth of `partial`, learning rates, epochs, size.

    Args:
        m: Measurements of the dataset with the backbone to fine-tune (`measure`).
        optimizer: adamw or sgd: the learning rate is scaled from that optimiser's default.
    """
    t = THRESHOLDS
    lr = DEFAULT_LR[optimizer] * _LR_SCALE
    per_class = m.min_per_class
    small = per_class < t["small_per_class"]
    size = "small" if small else "large"
    reasons = [
        f"size: the smallest class has {per_class} images ({m.n_images} images, {m.n_classes} classes): "
        f"{size} ({'below' if small else 'at or above'} the threshold of {t['small_per_class']} per class)"
    ]
    imbalanced = m.imbalance > _IMBALANCE
    if imbalanced:
        reasons.append(
            f"the classes are imbalanced ({m.imbalance:.0f}:1, above {_IMBALANCE:g}:1); the smallest class decides the "
            "size, the loss weighs every class alike (--class-weights balanced; --sampler balanced is the other way), "
            "and the best checkpoint is the one with the best macro F1 (--select-by macro-f1)"
        )
    balance = {"class_weights": "balanced", "select_by": "macro-f1"} if imbalanced else {}
    n_train = m.n_images

    if not m.pretrained:
        chosen = strategy_for("no-pretrained-weights")
        reasons.append(f"{m.backbone} has no pretrained weights: {chosen.advice}")
        return Advice(
            "no-pretrained-weights", size, "unknown", chosen.name, None, lr, _HEAD_LR_MULT, _SCRATCH_LR_MULT,
            _epochs(n_train), m.image_size, list(chosen.alternatives), reasons, m, **balance,
        )  # fmt: skip

    gain = m.probe_gain
    stages = m.stage_logme or ([m.logme] if m.logme is not None else [])
    best_stage = int(max(range(len(stages)), key=stages.__getitem__)) if stages else None
    drop = (stages[best_stage] - stages[-1]) if stages else 0.0
    probe_ok = gain is None or gain >= t["similar_probe_gain"]
    depth_ok = drop <= t["similar_depth_drop"]
    similar = probe_ok and depth_ok
    if gain is not None:
        chance = 1.0 / m.n_classes
        reasons.append(
            f"a linear probe on the frozen features reaches {100 * m.probe_acc:.1f}% (chance {100 * chance:.1f}%): "
            f"{gain:.2f} of the way from chance to perfect, {'at or above' if probe_ok else 'below'} "
            f"the {t['similar_probe_gain']} that counts as similar"
        )
    else:
        reasons.append("too few images per class to cross-validate a probe; similarity from LogME alone")
    reasons += _baseline_reason(m)
    if stages and len(stages) > 1:
        where = m.stage_names[best_stage] if best_stage < len(m.stage_names) else f"stage {best_stage}"
        if best_stage == len(stages) - 1:
            reasons.append(
                f"LogME rises to the final features ({stages[0]:.3f} at the first stage, {stages[-1]:.3f} at the "
                "last): the deepest pretrained features are the most useful"
            )
        else:
            reasons.append(
                f"LogME peaks at stage {best_stage} ({where}, {stages[best_stage]:.3f}) and falls to "
                f"{stages[-1]:.3f} at the final features, {drop:.3f} lower "
                f"({'within' if depth_ok else 'beyond'} the {t['similar_depth_drop']} allowed): "
                "the last stages specialised in something these images do not need"
            )
    similarity = "similar" if similar else "different"
    chosen = strategy_for(f"{size}-{similarity}")
    freeze = partial_depth(stages) if chosen.uses_depth else None
    epochs = _epochs(n_train) if chosen.fine_tunes else _PROBE_EPOCHS
    reasons.append(chosen.advice.format(freeze=freeze, stages=len(stages)))
    strategy, alternatives = chosen.name, list(chosen.alternatives)
    if chosen.fine_tunes:
        reasons.append(
            f"pretrained layers learn at {lr:g}, a tenth of the from-scratch rate; "
            f"the new head at {lr * _HEAD_LR_MULT:g}"
        )
    return Advice(
        f"{size}-{similarity}", size, similarity, strategy, freeze, lr, _HEAD_LR_MULT, _SCRATCH_LR_MULT,
        epochs, m.image_size, alternatives, reasons, m, **balance,
    )  # fmt: skip


def _baseline_reason(m: Measurements) -> list[str]:
    """What no transfer gets: the raw-pixel SVM against the frozen-feature probe, on the same sample."""
    return [] if m.pixel_baseline_acc is None else [_baseline_sentence(m)]


def _baseline_sentence(m: Measurements) -> str:
    pixels = f"a classical RBF-SVM on the raw pixels reaches {100 * m.pixel_baseline_acc:.1f}% (cross-validated)"
    if m.probe_acc is None:
        return pixels + ": the bar transfer has to clear"
    if m.pixel_baseline_acc >= m.probe_acc:
        return (
            f"{pixels}, as much as the frozen-feature probe: the frozen features alone buy nothing here; only "
            "training the backbone can beat the baseline (compare --strategies baseline,... shows whether it does)"
        )
    points = 100 * (m.probe_acc - m.pixel_baseline_acc)
    return f"{pixels}; the frozen features are {points:.1f} points ahead of it before any training"


def strategy_for(regime: str) -> Strategy:
    """The registered strategy that is the plan for `regime` (`Strategy.regimes`)."""
    found = [get_strategy(name) for name in strategy_names() if regime in get_strategy(name).regimes]
    if not found:
        raise ValueError(f"no registered strategy is the plan for the {regime} regime")
    return found[0]


def partial_depth(stage_logme: list[float]) -> int:
    """How many leading stages `partial` freezes: up to and including the stage with the best LogME.

    The stages after the best one make the features worse for this data, so they retrain; at least one
    stage is frozen and at least the last one trains.
    """
    if not stage_logme:
        raise ValueError("partial_depth needs the per-stage LogME scores")
    best = max(range(len(stage_logme)), key=stage_logme.__getitem__)
    return min(best + 1, max(1, len(stage_logme) - 1))


def _epochs(n_images: int, batch_size: int = 32) -> int:
    """About 300 optimisation steps, between 3 and 30 epochs: a small dataset needs passes, a large one steps."""
    return int(min(30, max(3, math.ceil(_TARGET_STEPS * batch_size / max(1, n_images)))))
