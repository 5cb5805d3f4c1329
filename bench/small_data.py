"""Does transfer beat the classical baseline on small real data? `compare` on each dataset, size and seed.

Every cell is one `run_compare` (the same split, seed and settings for every strategy, the baseline included)
scored on the dataset's whole test set; the strategies are chosen between on validation only. It prints one
markdown row per cell: each strategy's test accuracy, the baseline's chosen model, and the transfer gain of the
best-on-validation strategy over the baseline. The held-out dataset (animals) is printed in its own table.

A column may be a strategy with settings changed, ``STRATEGY+FIELD=VALUE[+FIELD=VALUE...]`` (TrainConfig fields,
values read as YAML), e.g. ``lp-ft+probe_views=2``. Each group of columns with the same settings is one `compare`
on the same split (the split depends only on the seed); *best on val* and *gain* are those of the plain columns.

    python bench/small_data.py --datasets fmnist,digits,animals --per-class 10,100 --seeds 0,1 \\
        --strategies baseline,linear-probe,lp-ft,lp-ft+probe_views=2,full --out runs/bench-small-data
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import yaml

from small_data_sets import add_cell_arguments, cells, print_tables, record
from transferkit.compare import run_compare

STRATEGIES = ["baseline", "linear-probe", "lp-ft", "full"]


def parse_column(column: str) -> tuple[str, dict]:
    """``lp-ft+probe_views=2`` -> ("lp-ft", {"probe_views": 2}); a plain strategy name has no settings."""
    strategy, *pairs = column.split("+")
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"column {column!r}: write settings as +FIELD=VALUE")
        settings[key] = yaml.safe_load(value)
    return strategy, settings


def group_columns(columns: list[str]) -> list[tuple[dict, list[str]]]:
    """Columns with the same settings, in first-seen order: each group is one compare."""
    groups: dict[str, tuple[dict, list[str]]] = {}
    for column in columns:
        strategy, settings = parse_column(column)
        key = json.dumps(settings, sort_keys=True)
        groups.setdefault(key, (settings, []))[1].append(column)
    return list(groups.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(parser, "runs/bench-small-data")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, per_class, seed, train, test, config, load_before in cells(args):
        began = time.perf_counter()
        test_acc, seconds_each, plain = {}, {}, None
        for settings, columns in group_columns(strategies):
            suffix = "".join(f"+{k}={v}" for k, v in settings.items())
            result = run_compare(
                train, test=test, config=replace(config, **settings),
                strategies=[parse_column(c)[0] for c in columns], out=out,
                name=f"{name}-{per_class}-s{seed}{suffix}", report=False,
            )  # fmt: skip
            by_strategy = {s.strategy: s for s in result.summaries}
            for column in columns:
                summary = by_strategy.get(parse_column(column)[0])
                test_acc[column] = summary.test_acc_mean if summary else None
                seconds_each[column] = summary.wall_seconds if summary else None
            plain = result if not settings else plain
        row = {
            "dataset": name, "per_class": per_class, "seed": seed, "test_images": len(test),
            "seconds": time.perf_counter() - began, "load": load_before, "load_after": os.getloadavg()[0],
            "test": test_acc, "seconds_each": seconds_each,
            "baseline_model": next((s.model for s in plain.summaries if s.classical), None) if plain else None,
            "best": plain.best_strategy if plain else None, "gain": plain.transfer_gain() if plain else None,
        }  # fmt: skip
        record(row, rows, out)
    print_tables(rows, lambda chosen: _table(chosen, strategies))


def _table(rows: list[dict], strategies: list[str]) -> str:
    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"

    head = ["data", "per class", "seed", *strategies, "baseline model", "best on val", "gain (points)", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        gain = r["gain"]["points"] if r["gain"] else None
        cells = [r["dataset"], str(r["per_class"]), str(r["seed"]), *(pct(r["test"].get(s)) for s in strategies),
                 r["baseline_model"] or "—", r["best"] or "—", "—" if gain is None else f"{gain:+.1f}",
                 f"{r['load']:.1f}–{r.get('load_after', r['load']):.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
