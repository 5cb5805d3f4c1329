"""`transferkit check`: list every problem in a dataset without training on it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transferkit.cli._data_args import add_data_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="list unreadable images, empty classes, imbalance and duplicates in a dataset",
        description="Check a dataset without training. Exit status 1 when there are errors. "
        "Example: transferkit check data/pets --test data/pets-test",
    )
    # Only files: check reads every image itself, tolerating the bad ones that loading would reject.
    add_data_arguments(parser, files_only=True)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from transferkit._console import results
    from transferkit.data import DataError, from_list
    from transferkit.data.check import CheckReport, check_sources, folder_source

    train = args.data or args.train_list
    if not train:
        raise SystemExit("no data given: pass an image folder or --train-list FILE")
    report = CheckReport()
    splits = {}
    for split, where in (("train", train), ("val", args.val or args.val_list), ("test", args.test or args.test_list)):
        if not where:
            continue
        classes = splits["train"].classes if "train" in splits and Path(where).is_file() else None
        try:
            # Every bad line is reported (not just the first); the good ones are checked as usual.
            listed = Path(where).is_file()
            source = (
                from_list(
                    where, root=args.root, classes=classes, problems=report.errors,
                    allow_outside_root=args.allow_outside_root,
                )
                if listed
                else None
            )  # fmt: skip
        except DataError as exc:
            report.errors.append(str(exc))
            continue
        source = source or folder_source(where, report)
        if source is not None and len(source):
            splits[split] = source
    if splits:
        check_sources(splits, report)

    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    for split, counts in report.counts.items():
        ratio = report.imbalance.get(split)
        results.print(
            f"{split}: {sum(counts.values())} readable images in {len(counts)} classes"
            + (f", imbalance {ratio:.1f}:1 (largest / smallest class)" if ratio else ""),
            highlight=False,
        )
    for message in report.errors:
        results.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    for message in report.warnings:
        results.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)
    results.print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)", highlight=False)
    return 0 if report.ok else 1
