"""`transferkit report`: (re)build the self-contained HTML report of a compare or run directory."""

from __future__ import annotations

import argparse

from transferkit.cli._run_args import RUN_HELP, add_run_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="build the HTML report of a compare directory or a run directory",
        description=(
            "Rebuild report.html from the files in a directory. Example: transferkit report runs/pets-compare-001"
        ),
    )
    add_run_arguments(parser, run_help="compare folder (with compare.json), or " + RUN_HELP, checkpoint=False)
    parser.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from transferkit._console import results
    from transferkit.cli._run_args import run_from_args
    from transferkit.report.html import build_report, load_result, summary_table

    # A compare folder is reported whole unless --strategy picks one of its runs.
    folder = Path(args.run) if (Path(args.run) / "compare.json").is_file() and not args.strategy else None
    folder = folder or run_from_args(args)[0]
    results.print(summary_table(load_result(folder)))
    results.print(f"report: {build_report(folder, args.out)}")
    return 0
