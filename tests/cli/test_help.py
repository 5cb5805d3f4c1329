"""Every option of every sub-command says what it does in --help."""

from __future__ import annotations

import argparse

from transferkit.cli import build_parser


def test_every_option_has_help():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    empty = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, command in commands.choices.items()
        for action in command._actions
        if not (action.help or "").strip()
    ]
    assert empty == []
