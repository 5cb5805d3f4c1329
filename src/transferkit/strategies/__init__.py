"""Fine-tuning strategies behind one interface, by name.

Importing this package registers the built-in strategies. Adding one: a module here with a `Strategy` subclass
decorated with `@register_strategy`, and its import below.
"""

from transferkit.strategies import baseline, full, linear_probe, lp_ft, partial, scratch  # noqa: F401  (registration)
from transferkit.strategies.base import (
    Freeze,
    Phase,
    Strategy,
    UnknownStrategyError,
    get_strategy,
    register_strategy,
    strategy_names,
    unregister_strategy,
)

DEFAULT_STRATEGY = linear_probe.LinearProbe.name
"""What `TrainConfig.strategy` defaults to."""

__all__ = [
    "DEFAULT_STRATEGY",
    "Freeze",
    "Phase",
    "Strategy",
    "UnknownStrategyError",
    "compare_defaults",
    "get_strategy",
    "register_strategy",
    "strategy_names",
    "unregister_strategy",
]


def compare_defaults() -> tuple[str, ...]:
    """The strategies `compare` runs when none are named."""
    return tuple(n for n in strategy_names() if get_strategy(n).in_compare)
