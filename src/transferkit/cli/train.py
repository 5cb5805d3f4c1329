"""`transferkit train`: fine-tune a backbone on a dataset."""

from __future__ import annotations

import argparse

from transferkit.cli._config_args import add_config_arguments, config_from_args
from transferkit.cli._data_args import add_data_arguments, load_sources


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="fine-tune a pretrained backbone on an image folder or list file",
        description="Fine-tune a pretrained backbone. Example: transferkit train data/pets --strategy linear-probe",
    )
    add_data_arguments(parser)
    add_config_arguments(parser)
    parser.add_argument("--out", default="runs", help="folder for run directories (default: runs)")
    parser.add_argument("--name", help="run name (default: the data folder's name)")
    parser.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run exactly: its run directory (or the --out folder holding only it), or "
        "'auto' for the newest run under --out with this name that has a saved state (a new run if there is "
        "none); its settings apply unless given here",
    )
    parser.add_argument(
        "--backbone-file",
        metavar="MODEL.onnx",
        help="linear-probe on this ONNX model cut at --cut-at instead of a registered backbone; writes one ONNX file",
    )
    parser.add_argument("--cut-at", metavar="NODE", help="with --backbone-file: the node whose output is the feature")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferkit.finetuner import Finetuner, _default_name
    from transferkit.runs import resolve_run
    from transferkit.train.rundir import resume_dir

    config = config_from_args(args)
    sources = load_sources(args, config.seed)
    if args.backbone_file or args.cut_at:
        return _run_from_model_file(args, config, sources)
    resume = args.resume if args.resume in (None, "auto") else resolve_run(args.resume).path
    run_dir = resume_dir(resume, args.out, args.name or _default_name(sources.train, config)) if resume else None
    if run_dir is not None and not args.config:
        args.config = str(run_dir / "config.yaml")  # the interrupted run's settings; options given here override
        config = config_from_args(args, saved_run=True)
        sources = load_sources(args, config.seed)
    tuner = Finetuner(sources.train, val=sources.val, test=sources.test, config=config)
    tuner.fit(out=args.out, name=args.name, run_dir=run_dir, resume=run_dir is not None)
    return 0


def _run_from_model_file(args: argparse.Namespace, config, sources) -> int:
    from transferkit.export.cut import train_from_model_file

    if not args.backbone_file:
        raise ValueError("--cut-at needs --backbone-file MODEL.onnx")
    if args.resume:
        raise ValueError(
            "--resume cannot be combined with --backbone-file (a linear probe on a model file is not resumable)"
        )
    train_from_model_file(
        args.backbone_file,
        args.cut_at,
        sources.train,
        sources.val,
        config=config,
        test=sources.test,
        out=args.out,
        name=args.name,
    )
    return 0
