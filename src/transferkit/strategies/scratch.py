"""``scratch``: the same architecture from random weights, the baseline that transfer must beat."""

from __future__ import annotations

from transferkit.strategies.base import Freeze, Phase, Strategy, register_strategy


@register_strategy
class Scratch(Strategy):
    name = "scratch"
    order = 50
    summary = "everything from random initialisation, at lr x scratch_lr_mult"
    pretrained = False
    in_compare = True
    regimes = ("no-pretrained-weights",)
    advice = "there are no pretrained features to transfer: train every layer"

    def phases(self, config) -> list[Phase]:
        # Random weights need the larger steps of ordinary training everywhere; there is no head to favour.
        lr = config.resolved_lr() * config.scratch_lr_mult
        freeze = Freeze(modules=config.freeze_modules, from_scratch=True)
        return [Phase(self.name, config.epochs, 1, freeze, lr, 1.0)]
