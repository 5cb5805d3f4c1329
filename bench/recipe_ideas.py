"""One table per recipe idea from finished `bench/small_data.py` runs: each ``STRATEGY+FIELD=VALUE`` column beside its
plain ``STRATEGY`` column of the same cell (same split, seed and settings otherwise), the change in test points, and
how many cells it helped. The held-out datasets get their own rows under each table, never counted with the others.

    python bench/recipe_ideas.py runs/small-recipe/results.jsonl [more results.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from small_data_sets import HELD_OUT

HELPED = 0.5
"""Points a change must add to count as help (and lose to count as harm); in between it is even."""


def _ideas(rows: list[dict]) -> dict[str, list[tuple[dict, str, str]]]:
    """idea (``FIELD=VALUE[+...]``) -> [(row, plain column, variant column)] over every cell that has both."""
    ideas = defaultdict(list)
    for row in rows:
        for column in row["test"]:
            strategy, _, settings = column.partition("+")
            if settings and strategy in row["test"]:
                ideas[settings].append((row, strategy, column))
    return ideas


def _verdict(changes: list[float]) -> str:
    up = sum(c >= HELPED for c in changes)
    down = sum(c <= -HELPED for c in changes)
    return f"helped {up} of {len(changes)}, hurt {down}, even {len(changes) - up - down}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.jsonl files of bench/small_data.py")
    args = parser.parse_args()
    rows = [json.loads(line) for path in args.results for line in Path(path).read_text().splitlines() if line]
    for idea, cells in sorted(_ideas(rows).items()):
        print(f"\n### `{idea.replace('+', ' ')}`\n")
        print("| data | per class | seed | baseline | strategy | plain | with it | change |")
        print("|---|---|---|---|---|---|---|---|")
        changes: dict[str, list[float]] = defaultdict(list)
        for held in (False, True):
            for row, plain, column in sorted(
                (c for c in cells if (c[0]["dataset"] in HELD_OUT) == held),
                key=lambda c: (c[1], c[0]["dataset"], c[0]["per_class"], c[0]["seed"]),
            ):
                a, b = row["test"][plain], row["test"][column]
                if a is None or b is None:
                    continue
                change = 100 * (b - a)
                changes[("held out " if held else "") + plain].append(change)
                base = row["test"].get("baseline")
                name = row["dataset"] + (" (held out)" if held else "")
                print(
                    f"| {name} | {row['per_class']} | {row['seed']} | {'—' if base is None else f'{100 * base:.2f}'} "
                    f"| {plain} | {100 * a:.2f} | {100 * b:.2f} | {change:+.2f} |"
                )
        print()
        for key, values in changes.items():
            print(f"- {key}: {_verdict(values)}; mean {sum(values) / len(values):+.2f} points")


if __name__ == "__main__":
    main()
