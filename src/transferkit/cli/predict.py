"""`transferkit predict`: top-k classes for image files, or every image in a folder."""

from __future__ import annotations

import argparse

from transferkit.cli._argtypes import positive_int
from transferkit.cli._run_args import RUN_HELP, add_run_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="classify image files with a trained run")
    add_run_arguments(parser, run_help=RUN_HELP + "; or an exported model file (.onnx, .mnn, .pt)")
    parser.add_argument("images", nargs="+", help="image files, or folders: every image in them (sub-folders too)")
    parser.add_argument("--top-k", type=positive_int, default=3, help="classes listed per image (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every image was classified, 1 when some could not be read, 2 when none could."""
    import json

    from transferkit._console import print_error, results
    from transferkit.cli._run_args import run_from_args
    from transferkit.evaluate import predict_images

    if _is_model_file(args.run):
        model, which = args.run, "best"
    else:
        model, which = run_from_args(args)
    predictions = predict_images(model, args.images, top_k=args.top_k, which=which)
    failed = [item for item in predictions if "error" in item]
    for item in failed:
        print_error(item["error"])
    if args.json:
        print(json.dumps(predictions, indent=2))  # unreadable images are listed with their "error"
    elif len(failed) < len(predictions):
        results.print(_table([item for item in predictions if "error" not in item]))
    if not failed:
        return 0
    return 2 if len(failed) == len(predictions) else 1


def _table(predictions: list[dict]):
    from rich.table import Table

    table = Table()
    table.add_column("image")
    for k in range(len(predictions[0]["top"])):
        table.add_column(f"#{k + 1}")
    for item in predictions:
        table.add_row(item["path"], *[f"{t['class']} {100 * t['probability']:.1f}%" for t in item["top"]])
    return table


def _is_model_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).suffix.lower() in (".onnx", ".mnn", ".pt", ".pts")
