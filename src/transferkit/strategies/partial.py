"""``partial``: the first K stages stay frozen, the rest fine-tunes."""

from __future__ import annotations

from transferkit.strategies.base import Freeze, Phase, Strategy, register_strategy


@register_strategy
class Partial(Strategy):
    name = "partial"
    order = 40
    summary = "everything after the first K stages (--freeze K) or outside --freeze-modules"
    in_compare = False
    uses_depth = True
    regimes = ("small-different",)
    alternatives = ("linear-probe", "full")
    advice = (
        "small and different: keep the stages up to the best one frozen (--freeze {freeze} of {stages} stages) "
        "and retrain the later ones, which fit these images worst"
    )

    def check(self, config) -> None:
        if config.freeze is None and not config.freeze_modules:
            raise ValueError("strategy 'partial' needs freeze (stages) or freeze_modules")

    def phases(self, config) -> list[Phase]:
        freeze = Freeze(stages=config.freeze, modules=config.freeze_modules)
        phase = Phase(self.name, config.epochs, 1, freeze, config.resolved_lr(), config.head_lr_mult, prefix_cache=True)
        return [phase]
