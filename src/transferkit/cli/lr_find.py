"""`transferkit lr-find`: the learning-rate range test, its curve as a PNG and the suggested --lr."""

from __future__ import annotations

import argparse

from transferkit.cli._config_args import add_config_arguments, config_from_args
from transferkit.cli._data_args import add_data_arguments, load_sources

RULES = ("minimum", "valley", "steepest")  # as transferkit.train.lr_find.RULES, without importing torch for --help


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "lr-find",
        help="learning-rate range test: loss against an exponentially rising --lr, and a suggested rate",
        description="Train briefly at exponentially rising rates (the strategy's parameter groups, head x10), plot "
        "the smoothed loss against --lr and suggest a rate; the model is not kept. Train with it by "
        "--lr <suggestion>, or let train and compare run the test with --lr auto. "
        "Example: transferkit lr-find data/pets --strategy full",
    )
    add_data_arguments(parser)
    add_config_arguments(parser, skip=("lr",))
    parser.add_argument("--out", default="runs", help="folder for the test's folder (default: runs)")
    parser.add_argument("--name", help="folder name (default: <data>-<strategy>-lr-find)")
    parser.add_argument(
        "--rule",
        choices=RULES,
        default="minimum",
        help="how the rate is read off the smoothed curve: minimum (a tenth of the rate at the lowest loss; the "
        "default), valley (half-way down the longest fall, fastai's default) or steepest (fastest fall per decade)",
    )
    parser.add_argument("--start-lr", type=float, default=1e-7, help="first --lr of the sweep (default: 1e-7)")
    parser.add_argument(
        "--end-lr", type=float, default=1.0, help="last --lr of the sweep; it stops earlier at divergence (default: 1)"
    )
    parser.add_argument("--json", action="store_true", help="print the curve and the suggestion as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from transferkit._console import results
    from transferkit.report.plots import plot_lr_find
    from transferkit.train.lr_find import find_lr
    from transferkit.train.rundir import RunDir, new_run_dir

    config = config_from_args(args)
    sources = load_sources(args, config.seed)
    found = find_lr(config, sources.train, start_lr=args.start_lr, end_lr=args.end_lr, rule=args.rule)
    folder = RunDir(new_run_dir(args.out, args.name or f"{sources.train.short_name}-{config.strategy}-lr-find"))
    folder.write_json("lr_find.json", found.to_dict())
    png = plot_lr_find(found.to_dict(), folder.path / "lr_find.png")
    if args.json:
        print(json.dumps({**found.to_dict(), "png": str(png)}, indent=2))
        return 0
    results.print(
        f"suggested --lr {found.suggestion:.2e} ({found.rule} rule; phase {found.phase}, "
        f"{len(found.lrs)} steps from {found.lrs[0]:.1e} to {found.lrs[-1]:.1e}, {found.stopped})",
        highlight=False,
    )
    results.print(f"curve: {png}; figures: {folder.path / 'lr_find.json'}", highlight=False)
    return 0
