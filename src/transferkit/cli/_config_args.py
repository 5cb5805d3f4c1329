"""TrainConfig fields as command-line options: the dataclass is the single source of the defaults."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from transferkit.config import AUTO_LR, TrainConfig, field_help
from transferkit.strategies import strategy_names

__all__ = ["add_config_arguments", "config_from_args"]


def _lr(text: str) -> float | str:
    """--lr: a number, or auto (the range test decides)."""
    if text.strip().lower() == AUTO_LR:
        return AUTO_LR
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or {AUTO_LR}, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One option per TrainConfig field, its help the field's docstring; booleans get --x / --no-x."""
    group = parser.add_argument_group("training")
    docs = field_help(TrainConfig)
    group.add_argument("--config", help="YAML file with TrainConfig fields; options given here override it")
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = docs.get(f.name, "") + (f" (default: {default})" if default not in (None, "") else "")
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        if f.name == "strategy":  # the registry decides the choices, so a newly registered strategy shows up here
            group.add_argument(flag, dest=f.name, choices=[*strategy_names(), "auto"], default=None, help=help_text)
        elif f.type in ("bool", bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "lr":
            group.add_argument(flag, dest=f.name, type=_lr, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
            group.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)


def config_from_args(args: argparse.Namespace, *, saved_run: bool = False, **overrides) -> TrainConfig:
    """TrainConfig from --config YAML (a run's own config.yaml when `saved_run`), then explicit options, then
    `overrides`."""
    base = TrainConfig.from_yaml(args.config, saved_run=saved_run).to_dict() if getattr(args, "config", None) else {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            base[f.name] = value
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)
