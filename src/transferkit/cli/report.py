"""`transferkit report`: (re)build the self-contained HTML report of a compare or run directory."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="build the HTML report of a compare directory or a run directory",
        description=(
            "Rebuild report.html from the files in a directory. Example: transferkit report runs/pets-compare-001"
        ),
    )
    parser.add_argument("run", help="compare directory (with compare.json) or run directory")
    parser.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferkit._console import results
    from transferkit.report.html import build_report, load_result, summary_table

    results.print(summary_table(load_result(args.run)))
    results.print(f"report: {build_report(args.run, args.out)}")
    return 0
