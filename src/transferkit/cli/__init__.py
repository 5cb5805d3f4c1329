"""The `transferkit` command: one sub-module per sub-command, each only parses and calls the library."""

from __future__ import annotations

import argparse
import sys

from transferkit.cli import advise, backbones, check, compare, evaluate, export, predict, report, train

__all__ = ["build_parser", "main"]

_COMMANDS = [backbones, advise, train, evaluate, predict, export, compare, report, check]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferkit", description="Fine-tune pretrained backbones on your images.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command; user errors print one clear line and exit 2, never a traceback."""
    from transferkit._errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        from rich.markup import escape

        from transferkit._console import console

        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
