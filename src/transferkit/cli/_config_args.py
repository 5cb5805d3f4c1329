"""TrainConfig fields as command-line options: the dataclass is the single source of the defaults."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from transferkit.config import TrainConfig

__all__ = ["add_config_arguments", "config_from_args"]

# Options spelled differently from their field, and help texts shorter than the field docs.
_HELP = {
    "backbone": "registered backbone (see `transferkit backbones`) or timm:<architecture>",
    "strategy": "linear-probe | partial | full | lp-ft | scratch | auto (measure the data, train the advised plan)",
    "weights": "backbone weights file (.pth/.pt/.safetensors) instead of the registered source",
    "freeze": "partial: freeze the first K stages",
    "freeze_modules": "freeze modules matching these comma-separated patterns (e.g. 'conv_stem,bn1,blocks.0*')",
    "lr": "learning rate of pretrained layers (default 1e-4 AdamW / 5e-3 SGD; the head gets x head-lr-mult)",
    "patience": "early stopping: epochs without a better validation accuracy",
    "image_size": "input size in pixels (default: the backbone's)",
}


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One option per TrainConfig field; booleans get --x / --no-x."""
    group = parser.add_argument_group("training")
    group.add_argument("--config", help="YAML file with TrainConfig fields; options given here override it")
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = _HELP.get(f.name, "") + (f" (default: {default})" if default not in (None, "") else "")
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
            group.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """TrainConfig from --config YAML, then explicit options, then `overrides`."""
    base = TrainConfig.from_yaml(args.config).to_dict() if getattr(args, "config", None) else {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            base[f.name] = value
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)
