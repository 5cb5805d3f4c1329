"""``lp-ft``: a linear probe first, then every layer fine-tunes from the probed head (Kumar et al., 2022)."""

from __future__ import annotations

from transferkit.strategies.base import Freeze, Phase, Strategy, register_strategy

FINETUNE_LR_SCALE = 1.0
"""The fine-tune phase's rate over `lr`. At 0.2 the first fine-tuning epoch keeps more of the probe's training
accuracy (87% against 72-79% at 1.0), but on 8 small-data cells a fifth of the rate helped test accuracy in 2 and hurt
in 1 (BENCHMARKS.md, "Small-data recipe, one idea at a time"), so it stays 1.0."""


@register_strategy
class LinearProbeThenFinetune(Strategy):
    name = "lp-ft"
    order = 20
    summary = "linear probe for lp_epochs, then everything"
    in_compare = True
    regimes = ("large-similar",)
    alternatives = ("full", "linear-probe")
    advice = (
        "large and similar: enough data to adapt every layer; probing first keeps the good features from "
        "being distorted by a random head"
    )

    def phases(self, config) -> list[Phase]:
        lr, probe_epochs = config.resolved_lr(), config.resolved_lp_epochs()
        probe = Phase(
            "probe", probe_epochs, 1, Freeze(backbone=True, modules=config.freeze_modules), lr * config.head_lr_mult,
            1.0, probe=True, augmented_views=config.probe_views,
        )  # fmt: skip
        # The probe has trained the head already: a 10x head rate here would pull the features towards a head that
        # is still moving (measured: 81.0% vs 79.8% on 2,000 Fashion-MNIST test images).
        finetune = Phase(
            "finetune", config.epochs - probe_epochs, probe_epochs + 1, Freeze(modules=config.freeze_modules),
            lr * FINETUNE_LR_SCALE, 1.0,
            announce="fine-tune phase",
        )  # fmt: skip
        return [probe, finetune]
