"""The `Strategy` interface and its registry: what trains, in which phases, at which learning rates.

A strategy is a small object that answers a few questions about itself: does it start from pretrained
weights, what does each of its phases freeze, at which rates do the pretrained layers and the new head
learn, and what the advisor and `compare` need to know about it. The runner, the CLI, the advisor and the
report read everything from here, so a new strategy is one module plus one `@register_strategy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from transferkit.config import TrainConfig
    from transferkit.models import FreezePlan

__all__ = [
    "Freeze",
    "Phase",
    "Strategy",
    "UnknownStrategyError",
    "get_strategy",
    "register_strategy",
    "strategy_names",
    "unregister_strategy",
]


class UnknownStrategyError(ValueError):
    """A strategy name that is not registered."""


@dataclass(frozen=True)
class Freeze:
    """What one phase keeps frozen; everything else trains."""

    backbone: bool = False
    """The whole backbone, BatchNorm statistics included: only the new head trains."""
    stages: int | None = None
    """This many leading stages (`transferkit backbones --detail` lists them)."""
    modules: str | None = None
    """Comma-separated module-name patterns, frozen in addition (the user's ``--freeze-modules``)."""
    from_scratch: bool = False
    """The weights start random (only changes the plan's description)."""

    def plan(self, model: nn.Module) -> FreezePlan:
        """The parameters this rule freezes in `model` (nothing is changed yet)."""
        from transferkit.models import plan_freeze

        return plan_freeze(
            model, backbone=self.backbone, stages=self.stages, modules=self.modules, from_scratch=self.from_scratch
        )


@dataclass(frozen=True)
class Phase:
    """A stretch of training with one optimiser and one freezing rule."""

    name: str
    """Shown in the logs and metrics.jsonl (``probe``, ``finetune``, or the strategy's name)."""
    epochs: int
    first_epoch: int
    freeze: Freeze
    lr: float
    """Learning rate of the trainable pretrained layers."""
    head_lr_mult: float
    """The new head learns at ``lr * head_lr_mult``."""
    probe: bool = False
    """Only the head trains, on a frozen backbone in eval mode: the features can be extracted once (feature
    cache) and the head solved by L-BFGS."""
    augmented_views: int = 0
    """A probe's L-BFGS head is fitted on the clean features and on this many augmented passes over the training
    images, so that a fine-tune phase after it starts from a head that already fits augmented inputs."""
    prefix_cache: bool = False
    """Without augmentation, the frozen leading layers may run once and the rest train on their output."""
    announce: str | None = None
    """Printed when the phase begins (after the first)."""

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epochs - 1


class Strategy:
    """One way of fine-tuning. Subclass, set the class attributes, implement `phases`, and register it.

    Example:
        >>> @register_strategy
        ... class HeadOnly(Strategy):
        ...     name = "head-only"
        ...     summary = "the head trains on the frozen backbone, by minibatches"
        ...     fine_tunes = False
        ...     def phases(self, config):
        ...         lr = config.resolved_lr() * config.head_lr_mult
        ...         return [Phase(self.name, config.epochs, 1, Freeze(backbone=True), lr, 1.0)]
        >>> "head-only" in strategy_names()
        True
        >>> unregister_strategy("head-only")
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    """What trains, in a few words (``--help``, `transferkit backbones`, the docs)."""
    pretrained: ClassVar[bool] = True
    """Starts from the backbone's pretrained weights (False: random initialisation)."""
    fine_tunes: ClassVar[bool] = True
    """Backbone layers train: the large-data recipe applies, and the advisor plans fine-tuning epochs."""
    classical: ClassVar[bool] = False
    """Not a network that trains: classical models fitted by `transferkit.baselines` (no phases, no epochs)."""
    in_compare: ClassVar[bool] = False
    """Run by `transferkit compare` when no ``--strategies`` are given."""
    order: ClassVar[int] = 100
    """Where it is listed (``--help``, `compare`'s default order): lowest first, then by registration."""
    uses_depth: ClassVar[bool] = False
    """Takes `TrainConfig.freeze` (stages); the advisor and `compare` choose one when it is unset."""
    regimes: ClassVar[tuple[str, ...]] = ()
    """Advisor regimes (``small-similar``, ``large-different``, ``no-pretrained-weights``...) this is the plan for."""
    alternatives: ClassVar[tuple[str, ...]] = ()
    """What the advisor suggests comparing it with."""
    advice: ClassVar[str] = ""
    """The advisor's reason for choosing it; may use ``{freeze}`` and ``{stages}``."""

    def check(self, config: TrainConfig) -> None:
        """Raise ValueError when `config` cannot run this strategy."""

    def phases(self, config: TrainConfig) -> list[Phase]:
        """The phases of a run with `config`, in order; their epochs add up to `config.epochs`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make `cls` available by its `name` (a duplicate name is an error)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY or cls.name == "auto":
        raise ValueError(f"a strategy named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister_strategy(name: str) -> None:
    """Remove a registered strategy (for strategies defined by tests or notebooks)."""
    _REGISTRY.pop(name, None)


def get_strategy(name: str) -> Strategy:
    """The registered strategy called `name`.

    Raises:
        UnknownStrategyError: No such strategy; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {name!r}; choose one of {', '.join(strategy_names())}") from None


def strategy_names() -> tuple[str, ...]:
    """Registered strategy names, by `Strategy.order`, then in registration order."""
    return tuple(sorted(_REGISTRY, key=lambda name: _REGISTRY[name].order))
