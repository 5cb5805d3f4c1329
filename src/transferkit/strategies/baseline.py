"""``baseline``: no transfer at all, or transfer without training: classical models a user could fit in seconds.

What transfer has to beat. Logistic regression and an RBF-SVM (scikit-learn, C chosen by cross-validation on
the training images) on the raw pixels, downsampled and standardised, and on the frozen pretrained features
(the few-shot path AutoGluon takes). `compare` runs it beside the strategies and states the transfer gain.
"""

from __future__ import annotations

from transferkit.strategies.base import Strategy, register_strategy


@register_strategy
class Baseline(Strategy):
    name = "baseline"
    order = 5
    summary = "classical models (logistic regression, RBF-SVM) on raw pixels and on frozen features"
    fine_tunes = False
    classical = True
    in_compare = True

    def phases(self, config) -> list:
        raise TypeError(f"{self.name} fits classical models (transferkit.baselines); it has no training phases")
