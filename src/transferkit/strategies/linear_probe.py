"""``linear-probe``: the backbone stays frozen and only the new head trains."""

from __future__ import annotations

from transferkit.strategies.base import Freeze, Phase, Strategy, register_strategy


@register_strategy
class LinearProbe(Strategy):
    name = "linear-probe"
    order = 10
    summary = "only the new head; backbone and its BatchNorm statistics frozen"
    fine_tunes = False
    in_compare = True
    regimes = ("small-similar",)
    alternatives = ("lp-ft",)
    advice = "small and similar: train only the new head on the frozen features"

    def phases(self, config) -> list[Phase]:
        # Only the head trains, so its rate is the head's (lr x head_lr_mult) for every trainable parameter.
        lr = config.resolved_lr() * config.head_lr_mult
        freeze = Freeze(backbone=True, modules=config.freeze_modules)
        return [Phase("probe", config.epochs, 1, freeze, lr, 1.0, probe=True, augmented_views=config.probe_views)]
