"""Does ``--strategy auto`` choose well? Its race against every fixed strategy, on each dataset, size and seed.

Every cell is one `run_compare` of the fixed strategies and ``auto`` (same split, seed and settings; auto's race
trains short trials of the candidates on the same validation split, then the winner to the end), scored on the
dataset's whole test set. The test set only grades: auto never sees it. Per cell it prints what auto chose, what
the advisor's rule said, and auto's test accuracy against the best single strategy (the best in hindsight, by test)
and against the baseline; then the two criteria over all cells: within 1 point of the best single strategy, and
never below the baseline. The held-out dataset (animals) is summarised apart.

    python bench/auto_race.py --datasets fmnist,digits,animals --per-class 10,100 --seeds 0,1 --out runs/bench-auto
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from small_data_sets import add_cell_arguments, cells, print_tables, record
from transferkit.compare import run_compare

FIXED = ["baseline", "linear-probe", "lp-ft", "full"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(parser, "runs/bench-auto")
    parser.add_argument("--time-budget", default=None, help="auto's --time-budget (default none: rungs from epochs)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, per_class, seed, train, test, config, load_before in cells(args, time_budget=args.time_budget):
        began = time.perf_counter()
        result = run_compare(
            train, test=test, config=config, strategies=[*FIXED, "auto"], out=out,
            name=f"{name}-{per_class}-s{seed}", report=False,
        )  # fmt: skip
        advice = json.loads((result.compare_dir / "auto" / "advice.json").read_text())
        row = {
            "dataset": name, "per_class": per_class, "seed": seed, "test_images": len(test),
            "seconds": time.perf_counter() - began, "load": load_before,
            "test": {s.strategy: s.test_acc_mean for s in result.summaries},
            "val": {s.strategy: s.val_acc_mean for s in result.summaries},
            "val_images": json.loads((result.compare_dir / "baseline" / "data.json").read_text())["val"]["n_images"],
            "race": advice.get("race"),
            "seconds_each": {s.strategy: s.wall_seconds for s in result.summaries},
            "auto_chose": advice["strategy"], "rule_said": advice.get("rule_strategy"),
            "race_seconds": (advice.get("race") or {}).get("seconds"),
        }  # fmt: skip
        record(row, rows, out)
    print_tables(rows, lambda chosen: f"{_table(chosen)}\n\n{_criteria(chosen)}")


def _gaps(r: dict) -> tuple[float | None, float | None]:
    """auto's test accuracy minus the best single strategy's, and minus the baseline's, in points."""
    auto = r["test"].get("auto")
    fixed = [r["test"][s] for s in FIXED if r["test"].get(s) is not None]
    if auto is None or not fixed:
        return None, None
    base = r["test"].get("baseline")
    return 100 * (auto - max(fixed)), None if base is None else 100 * (auto - base)


def _table(rows: list[dict]) -> str:
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    head = ["data", "per class", "seed", *FIXED, "auto", "auto chose", "rule said", "vs best", "vs baseline",
            "race s", "load"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        best, base = _gaps(r)
        cells = [r["dataset"], str(r["per_class"]), str(r["seed"]), *(pct(r["test"].get(s)) for s in FIXED),
                 pct(r["test"].get("auto")), r["auto_chose"], r["rule_said"] or "—",
                 "—" if best is None else f"{best:+.1f}", "—" if base is None else f"{base:+.1f}",
                 "—" if r["race_seconds"] is None else f"{r['race_seconds']:.0f}", f"{r['load']:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _criteria(rows: list[dict]) -> str:
    gaps = [_gaps(r) for r in rows]
    within = sum(1 for best, _ in gaps if best is not None and best >= -1.0)
    below = sum(1 for _, base in gaps if base is not None and base < 0)
    return (
        f"auto within 1 point of the best single strategy: {within} of {len(rows)} cells "
        f"({100 * within / len(rows):.0f}%; target 80%); below the baseline: {below} of {len(rows)} (target 0)"
    )


if __name__ == "__main__":
    main()
