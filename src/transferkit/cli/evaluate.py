"""`transferkit evaluate`: accuracy, per-class P/R/F1 and a confusion matrix of a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="evaluate a trained run on labelled data")
    parser.add_argument("run", help="run directory")
    parser.add_argument("data", help="image folder or list file with the run's classes")
    parser.add_argument("--root", help="folder a list file's paths are relative to")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--out", help="folder for metrics.json and confusion.png (default: RUN/eval)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    from transferkit._console import results
    from transferkit.cli._data_args import source_from_path
    from transferkit.evaluate import evaluate_run, load_run

    classes = load_run(args.run, args.checkpoint).classes
    source = source_from_path(args.data, args.root, classes if Path(args.data).is_file() else None)
    metrics, out = evaluate_run(args.run, source, which=args.checkpoint, out_dir=args.out)
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
        return 0
    table = Table(title=f"{source.name}: accuracy {100 * metrics.accuracy:.2f}% on {metrics.n} images")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(metrics.classes):
        table.add_row(
            name,
            f"{metrics.precision[i]:.3f}",
            f"{metrics.recall[i]:.3f}",
            f"{metrics.f1[i]:.3f}",
            str(metrics.support[i]),
        )
    table.add_row("macro avg", "", "", f"{metrics.macro_f1:.3f}", str(metrics.n), style="bold")
    results.print(table)
    results.print(f"confusion matrix: {out / 'confusion.png'}; metrics: {out / 'metrics.json'}")
    return 0
