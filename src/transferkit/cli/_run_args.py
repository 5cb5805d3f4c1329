"""The options that name a trained run, shared by evaluate, predict, export and report."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_run_arguments", "run_from_args"]

RUN_HELP = (
    "run folder, a checkpoint file in one (RUN/best.safetensors), or the --out folder of train or compare "
    "when it holds one run (else choose with --strategy or pass one of the folders listed)"
)


def add_run_arguments(parser: argparse.ArgumentParser, *, run_help: str = RUN_HELP, checkpoint: bool = True) -> None:
    """RUN, --strategy and (unless `checkpoint` is False) --checkpoint."""
    parser.add_argument("run", help=run_help)
    parser.add_argument(
        "--strategy",
        metavar="NAME",
        help="the run of this strategy in a compare folder (or in a folder of runs); `transferkit runs` lists them",
    )
    if checkpoint:
        parser.add_argument(
            "--checkpoint",
            "--which",
            dest="checkpoint",
            choices=("best", "last"),
            help="the run's checkpoint to use (default: best, or the one a checkpoint file names)",
        )


def run_from_args(args: argparse.Namespace) -> tuple[Path, str]:
    """The run folder and checkpoint the options name (see `transferkit.runs.resolve_run`)."""
    from transferkit.runs import resolve_run

    resolved = resolve_run(args.run, strategy=args.strategy)
    return resolved.path, resolved.which(getattr(args, "checkpoint", None))
