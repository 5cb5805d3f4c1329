"""`transferkit export`: write a trained run as ONNX, MNN or TorchScript, with a parity check."""

from __future__ import annotations

import argparse

from transferkit.cli._argtypes import positive_int
from transferkit.cli._run_args import add_run_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export a trained run to ONNX, MNN or TorchScript and check it against the PyTorch model",
        description=(
            "Export a run's best checkpoint. Writes RUN/export/model.<ext>, preprocessing.json and parity.json. "
            "Example: transferkit export runs/pets-001 --format mnn --int8"
        ),
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--format",
        dest="fmt",
        required=True,
        choices=["onnx", "mnn", "torchscript"],
        help="onnx (onnxruntime and most runtimes), mnn (mobile; --int8 too) or torchscript (PyTorch without Python)",
    )
    parser.add_argument("--int8", action="store_true", help="mnn: also write an int8-quantised model.int8.mnn")
    parser.add_argument(
        "--int8-min-agreement",
        type=float,
        default=0.9,
        metavar="F",
        help="int8: smallest top-1 agreement with the PyTorch model that is accepted (default 0.9)",
    )
    parser.add_argument("--calib", metavar="DATA", help="int8 calibration images (default: the run's training split)")
    parser.add_argument(
        "--check-data",
        metavar="DATA",
        help="images for the parity check when the run's validation data is unavailable "
        "(image folder, list file, or Fashion-MNIST folder)",
    )
    parser.add_argument(
        "--check-images", type=positive_int, default=256, help="check parity on at most N images (default 256)"
    )
    parser.add_argument("--out", help="output folder (default: RUN/export)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferkit._console import results
    from transferkit.cli._run_args import run_from_args
    from transferkit.export import Tolerance, export_run

    if args.calib and not args.int8:
        raise ValueError("--calib is only used with --int8")
    run_dir, which = run_from_args(args)
    result = export_run(
        run_dir,
        args.fmt,
        out_dir=args.out,
        int8=args.int8,
        calib=args.calib,
        check_data=args.check_data,
        check_images=args.check_images,
        which=which,
        int8_tolerance=Tolerance(min_top1_agreement=args.int8_min_agreement, max_abs_diff=None),
    )
    results.print(f"wrote {', '.join(p.name for p in result.files)} and parity.json to {result.out_dir}")
    return 0
