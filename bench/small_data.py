"""Does transfer beat the classical baseline on small real data? `compare` on each dataset, size and seed.

Every cell is one `run_compare` (the same split, seed and settings for every strategy, the baseline included)
scored on the dataset's whole test set; the strategies are chosen between on validation only. It prints one
markdown row per cell: each strategy's test accuracy, the baseline's chosen model, and the transfer gain of the
best-on-validation strategy over the baseline. The held-out dataset (animals) is printed in its own table.

    python bench/small_data.py --datasets fmnist,digits,animals --per-class 10,100 --seeds 0,1 \\
        --out runs/bench-small-data
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from small_data_sets import HELD_OUT, load
from transferkit import TrainConfig
from transferkit.compare import run_compare

STRATEGIES = ["baseline", "linear-probe", "lp-ft", "full"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fmnist,digits,animals")
    parser.add_argument("--per-class", default="10,100")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", default="runs/bench-small-data")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets.split(","):
        for per_class in (int(n) for n in args.per_class.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                load_before = os.getloadavg()[0]
                train, test = load(name, per_class, seed)
                config = TrainConfig(
                    backbone="efficientnet_lite0", epochs=args.epochs, lr=args.lr, image_size=args.px, seed=seed,
                    checkpoint_every_steps=0,
                )  # fmt: skip
                began = time.perf_counter()
                result = run_compare(
                    train, test=test, config=config, strategies=strategies, out=out, name=f"{name}-{per_class}-s{seed}",
                    report=False,
                )  # fmt: skip
                row = {
                    "dataset": name, "per_class": per_class, "seed": seed, "test_images": len(test),
                    "seconds": time.perf_counter() - began, "load": load_before,
                    "test": {s.strategy: s.test_acc_mean for s in result.summaries},
                    "seconds_each": {s.strategy: s.wall_seconds for s in result.summaries},
                    "baseline_model": next((s.model for s in result.summaries if s.classical), None),
                    "best": result.best_strategy, "gain": result.transfer_gain(),
                }  # fmt: skip
                rows.append(row)
                (out / "results.jsonl").open("a").write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    for title, keep in (
        ("tuned-on", lambda r: r["dataset"] not in HELD_OUT),
        ("held out", lambda r: r["dataset"] in HELD_OUT),
    ):
        chosen = [r for r in rows if keep(r)]
        if chosen:
            print(f"\n{title}:\n")
            print(_table(chosen, strategies))


def _table(rows: list[dict], strategies: list[str]) -> str:
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    head = ["data", "per class", "seed", *strategies, "baseline model", "best on val", "gain (points)", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        gain = r["gain"]["points"] if r["gain"] else None
        cells = [r["dataset"], str(r["per_class"]), str(r["seed"]), *(pct(r["test"].get(s)) for s in strategies),
                 r["baseline_model"] or "—", r["best"] or "—", "—" if gain is None else f"{gain:+.1f}",
                 f"{r['load']:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
