"""`transferkit runs`: the runs in a folder, newest first, with what each trained and how well."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "runs",
        help="list the runs in a folder (train's or compare's --out), newest first",
        description="List run folders with strategy, backbone, best validation and test accuracy and date. "
        "Example: transferkit runs runs/",
    )
    parser.add_argument("folder", nargs="?", default="runs", help="folder to look in (default: runs)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from rich.table import Table

    from transferkit._console import console, results
    from transferkit.runs import find_runs

    if not Path(args.folder).is_dir():
        raise FileNotFoundError(f"{args.folder}: folder not found")
    found = find_runs(args.folder)
    if args.json:
        print(json.dumps([r.to_dict() for r in found], indent=2))
        return 0
    if not found:
        console.print(f"no runs in {args.folder}", highlight=False)
        return 0
    table = Table(title=f"runs in {args.folder}, newest first")
    for col in ("run", "strategy", "backbone", "best val", "test", "date"):
        table.add_column(col, justify="right" if col in ("best val", "test") else "left")
    for r in found:
        table.add_row(str(r.path), r.strategy or "?", r.backbone or "?", _pct(r.best_val_acc), _pct(r.test_acc), r.date)
    results.print(table)
    return 0


def _pct(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None else "-"
