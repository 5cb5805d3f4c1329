"""``full``: every layer fine-tunes, the new head ten times faster than the pretrained layers."""

from __future__ import annotations

from transferkit.strategies.base import Freeze, Phase, Strategy, register_strategy


@register_strategy
class Full(Strategy):
    name = "full"
    order = 30
    summary = "everything, pretrained layers at lr and the new head at lr x head_lr_mult"
    in_compare = True
    regimes = ("large-different",)
    alternatives = ("scratch", "partial")
    advice = (
        "large and different: every layer must adapt; the pretrained weights are still a better start than "
        "random ones on a short schedule (scratch catches up only with long training)"
    )

    def phases(self, config) -> list[Phase]:
        freeze = Freeze(modules=config.freeze_modules)
        return [Phase(self.name, config.epochs, 1, freeze, config.resolved_lr(), config.head_lr_mult)]
