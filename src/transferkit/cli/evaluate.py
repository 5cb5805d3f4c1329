"""`transferkit evaluate`: accuracy, per-class P/R/F1 and a confusion matrix of a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferkit.cli._run_args import add_run_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="evaluate a trained run on labelled data")
    add_run_arguments(parser)
    parser.add_argument(
        "data", help="image folder or list file of the run's classes (all, or some: figures for the classes it holds)"
    )
    parser.add_argument("--root", help="folder a list file's paths are relative to")
    parser.add_argument(
        "--allow-outside-root", action="store_true", help="read list-file paths that lead outside --root"
    )
    parser.add_argument("--out", help="folder for metrics.json and confusion.png (default: RUN/eval)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    from transferkit._console import results
    from transferkit.cli._data_args import source_from_path
    from transferkit.cli._run_args import run_from_args
    from transferkit.evaluate import evaluate_run, load_run

    run_dir, which = run_from_args(args)
    classes = load_run(run_dir, which).classes
    listed = Path(args.data).is_file()
    source = source_from_path(args.data, args.root, classes if listed else None, outside_root=args.allow_outside_root)
    metrics, out = evaluate_run(run_dir, source, which=which, out_dir=args.out)
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
        return 0
    table = Table(
        title=f"{source.name}: accuracy {100 * metrics.accuracy:.2f}%, balanced accuracy "
        f"{100 * metrics.balanced_accuracy:.2f}%, macro F1 {metrics.macro_f1:.3f} on {metrics.n} images"
    )
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(metrics.classes):
        if not metrics.support[i]:
            continue  # a class of the run that this data does not hold
        table.add_row(
            name,
            f"{metrics.precision[i]:.3f}",
            f"{metrics.recall[i]:.3f}",
            f"{metrics.f1[i]:.3f}",
            str(metrics.support[i]),
        )
    table.add_row("macro avg", "", "", f"{metrics.macro_f1:.3f}", str(metrics.n), style="bold")
    results.print(table)
    absent = [name for name, n in zip(metrics.classes, metrics.support, strict=True) if not n]
    if absent:
        results.print(f"not in this data (no figures): {', '.join(absent)}", highlight=False)
    results.print(f"confusion matrix: {out / 'confusion.png'}; metrics: {out / 'metrics.json'}")
    return 0
