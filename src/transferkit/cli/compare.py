"""`transferkit compare`: train several strategies on the same data and compare them."""

from __future__ import annotations

import argparse

from transferkit.cli._config_args import add_config_arguments, config_from_args
from transferkit.cli._data_args import add_data_arguments, load_sources
from transferkit.strategies import DEFAULT_STRATEGY, compare_defaults, get_strategy, strategy_names


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare",
        help="compare fine-tuning strategies on the same split, seed, epochs and preprocessing",
        description=(
            "Train each strategy in its own run directory under one compare directory, print a table and "
            "write compare.json, curves.png and report.html. Example: transferkit compare data/pets "
            "--strategies linear-probe,full,scratch --epochs 5"
        ),
    )
    add_data_arguments(parser)
    add_config_arguments(parser, skip=("strategy",))
    default = ",".join(compare_defaults())
    depth = [name for name in strategy_names() if get_strategy(name).uses_depth]
    parser.add_argument(
        "--strategies",
        default=default,
        help=f"comma-separated strategies to compare, from {', '.join(strategy_names())} and auto "
        f"(default: {default}); {', '.join(depth) or 'a strategy with a depth'} uses --freeze, by default half the "
        "backbone's stages; auto trains the plan `transferkit advise` gives",
    )
    parser.add_argument("--cv", type=int, metavar="K", help="K-fold stratified cross-validation over train + val")
    parser.add_argument("--out", default="runs", help="folder for the compare directory (default: runs)")
    parser.add_argument("--name", help="compare directory name (default: the data's name + '-compare')")
    parser.add_argument("--no-report", dest="report", action="store_false", help="skip report.html")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transferkit.compare import run_compare

    # The strategy field is set per strategy; a placeholder keeps a --config YAML naming any strategy valid.
    config = config_from_args(args, strategy=DEFAULT_STRATEGY)
    sources = load_sources(args, config.seed)
    result = run_compare(
        sources.train,
        val=sources.val,
        test=sources.test,
        config=config,
        strategies=args.strategies,
        cv=args.cv,
        out=args.out,
        name=args.name,
        report=args.report,
    )
    return 0 if any(s.runs for s in result.summaries) else 1
