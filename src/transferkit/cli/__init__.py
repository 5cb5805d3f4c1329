"""The `transferkit` command: one sub-module per sub-command, each only parses and calls the library.

Sub-command modules import nothing heavy at module level (torch, timm, torchvision, matplotlib,
scikit-learn are imported by the functions that run a command), so that ``--help``, ``--version``,
``backbones`` and ``check`` start in about a second.
"""

from __future__ import annotations

import argparse
import os
import sys

from transferkit.cli import (
    advise,
    backbones,
    check,
    compare,
    evaluate,
    export,
    lr_find,
    predict,
    report,
    runs,
    train,
)

__all__ = ["build_parser", "console_main", "main"]

_QUIET_HELP = "say nothing on stderr but errors (no progress, epoch lines, warnings); results still go to stdout"

_COMMANDS = [backbones, advise, lr_find, train, evaluate, predict, export, compare, report, runs, check]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferkit", description="Fine-tune pretrained backbones on your images.")
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help=_QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(sub)
    for sub_parser in sub.choices.values():  # also after the command: `transferkit predict ... -q`
        sub_parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=_QUIET_HELP)
    return parser


def console_main() -> int:
    """The `transferkit` command (and ``python -m transferkit``): `main` under tcmalloc when it is installed
    (`transferkit._malloc`; ``TRANSFERKIT_MALLOC=system`` keeps the system allocator)."""
    from transferkit._malloc import reexec_with_tcmalloc

    reexec_with_tcmalloc()
    return main()


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command; user errors print one clear line on stderr and exit 2, never a traceback."""
    from transferkit._console import console, print_error, set_verbosity

    args = build_parser().parse_args(argv)
    was_quiet = console.quiet
    if args.quiet:
        set_verbosity("quiet")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:  # evaluated only when something is raised: it imports torch
        print_error(str(exc))
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `transferkit runs --json | head`: the reader has gone, which is no error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again
        return 141
    finally:
        console.quiet = was_quiet  # main() called from Python leaves the caller's verbosity as it was


def _user_errors() -> tuple[type[BaseException], ...]:
    from transferkit._errors import USER_ERRORS

    return USER_ERRORS


class _Version(argparse.Action):
    """``--version``; the metadata look-up only happens when it is asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args) -> None:
        from transferkit._version import package_version

        print(f"{parser.prog} {package_version()}")
        parser.exit()
