"""`transferkit predict`: top-k classes for image files."""

from __future__ import annotations

import argparse

from transferkit.cli._argtypes import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="classify image files with a trained run")
    parser.add_argument("run", help="run directory, or an exported model file (.onnx, .mnn, .pt)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=positive_int, default=3, help="classes listed per image (default 3)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="a run's checkpoint to use")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    from transferkit._console import console
    from transferkit.evaluate import predict_images

    results = predict_images(args.run, args.images, top_k=args.top_k, which=args.checkpoint)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = Table()
    table.add_column("image")
    for k in range(len(results[0]["top"])):
        table.add_column(f"#{k + 1}")
    for item in results:
        table.add_row(item["path"], *[f"{t['class']} {100 * t['probability']:.1f}%" for t in item["top"]])
    console.print(table)
    return 0
