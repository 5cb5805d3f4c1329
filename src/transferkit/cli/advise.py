"""`transferkit advise`: measure a dataset against a backbone and say how to fine-tune it, and why."""

from __future__ import annotations

import argparse
import json

from transferkit.cli._data_args import add_data_arguments, load_sources
from transferkit.config import MAX_IMAGE_SIZE


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "advise",
        help="measure the data against a backbone and advise a strategy, learning rate, epochs and size",
        description=(
            "Measure how much data there is and how well frozen pretrained features fit it (linear probe, "
            "LogME per stage), then advise a fine-tuning plan and explain it. Example: transferkit advise "
            "data/pets; transferkit advise data/pets --backbones all"
        ),
    )
    add_data_arguments(parser)
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone to measure (default: %(default)s)")
    parser.add_argument(
        "--backbones",
        metavar="NAMES",
        help="rank these comma-separated backbones by LogME (or 'all': every backbone with installed weights), "
        "then advise for the best",
    )
    parser.add_argument("--image-size", type=int, help="input size in pixels (default: what training would pick)")
    parser.add_argument("--sample-images", type=int, default=1000, help="images measured (default: %(default)s)")
    parser.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"), help="optimiser the lr is for")
    parser.add_argument("--seed", type=int, default=0, help="fixes the sample and the probe folds")
    parser.add_argument("--device", default="cpu", help="where the backbone runs (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print the advice as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferkit._console import results
    from transferkit.advise import available_backbones, decide, measure, rank_backbones

    if args.sample_images < 2:
        raise ValueError("--sample-images must be at least 2")
    if args.image_size is not None and not 16 <= args.image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"--image-size must be between 16 and {MAX_IMAGE_SIZE}")
    source = load_sources(args, args.seed).train
    common = {"sample_images": args.sample_images, "image_size": args.image_size, "seed": args.seed}
    ranking = None
    if args.backbones:
        names = available_backbones() if args.backbones == "all" else [n.strip() for n in args.backbones.split(",")]
        ranking = rank_backbones(source, [n for n in names if n], device=args.device, **common)
        measured = ranking[0].measurements
    else:
        measured = measure(source, args.backbone, device=args.device, **common)
    advice = decide(measured, args.optimizer)
    if args.json:
        data = advice.to_dict()
        if ranking is not None:
            data["ranking"] = [s.to_dict() for s in ranking]
        print(json.dumps(data, indent=2, default=str))
        return 0
    if ranking is not None:
        results.print(_ranking_table(ranking))
    results.print(_measurement_table(measured))
    results.print(advice.explain(), highlight=False, markup=False)
    return 0


def _ranking_table(ranking):
    from rich.table import Table

    table = Table(title="backbones ranked by LogME of their frozen features (higher is better)")
    for col in ("rank", "backbone", "LogME", "probe acc", "image size", "seconds"):
        table.add_column(col)
    for s in ranking:
        probe = f"{100 * s.probe_acc:.1f}%" if s.probe_acc is not None else "-"
        size = f"{s.measurements.image_size} px"
        table.add_row(str(s.rank), s.backbone, f"{s.logme:.3f}", probe, size, f"{s.seconds:.1f}")
    return table


def _measurement_table(m):
    from rich.table import Table

    table = Table(title=f"measurements: {m.backbone} on {m.sample_images} of {m.n_images} images, {m.image_size} px")
    table.add_column("measure")
    table.add_column("value")
    table.add_row("classes", str(m.n_classes))
    table.add_row("images per class (smallest / median)", f"{m.min_per_class} / {m.median_per_class:g}")
    table.add_row("imbalance (largest / smallest class)", f"{m.imbalance:.1f}")
    table.add_row("pretrained weights", "yes" if m.pretrained else "no (random init)")
    if m.probe_acc is not None:
        probe = f"{100 * m.probe_acc:.1f}% (gain over chance {m.probe_gain:.2f})"
        table.add_row("linear probe accuracy (3-fold)", probe)
    table.add_row("LogME of the final features", f"{m.logme:.3f}")
    for name, score in zip(m.stage_names, m.stage_logme, strict=False):
        table.add_row(f"  LogME after stage {name}", f"{score:.3f}")
    table.add_row("measured in", f"{m.seconds:.1f} s")
    return table
