"""Does lp-ft keep its probe? linear-probe, full and lp-ft (probe head fitted on clean features only, as before,
and on clean + augmented views, now) side by side on the same data, split and settings.

For each run it prints the probe's last validation accuracy, the first fine-tuning epoch's training and
validation accuracy (where the old lp-ft lost what the probe had learnt), the best validation accuracy and the
test accuracy of the best-on-validation checkpoint on the whole test set.

    python bench/lpft.py --datasets fmnist,digits --per-class 100 --seeds 0,1 --out runs/bench-lpft
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from small_data_sets import load
from transferkit import TrainConfig, evaluate_run, train_run
from transferkit.strategies import lp_ft

VARIANTS = {
    "linear-probe": ("linear-probe", None, 1.0),
    "full": ("full", None, 1.0),
    "lp-ft (clean probe)": ("lp-ft", 0, 1.0),
    "lp-ft (clean + 2 augmented views)": ("lp-ft", 2, 1.0),
    "lp-ft (2 augmented views, fine-tune at lr x0.2)": ("lp-ft", 2, 0.2),
}


def run_one(label: str, config: TrainConfig, views: int | None, scale: float, train, test, out: Path) -> dict:
    if views is not None:
        config = replace(config, probe_views=views)
    lp_ft.FINETUNE_LR_SCALE = scale
    began = time.perf_counter()
    result = train_run(config, train, run_dir=out)
    seconds = time.perf_counter() - began
    metrics, _ = evaluate_run(out, test)
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    probe = [e for e in epochs if e.get("phase") == "probe"]
    tuned = [e for e in epochs if e.get("phase") == "finetune"]
    return {
        "variant": label,
        "probe_val": probe[-1]["val_acc"] if probe and tuned else None,
        "ft1_train": tuned[0]["train_acc"] if tuned else None,
        "ft1_val": tuned[0]["val_acc"] if tuned else None,
        "best_val": result.best_val_acc,
        "test": metrics.accuracy,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fmnist,digits")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", default="runs/bench-lpft")
    parser.add_argument("--variants", default=None, help="comma-separated indices into VARIANTS (default all)")
    args = parser.parse_args()
    rows = []
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for name in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            train, test = load(name, args.per_class, seed)
            chosen = list(VARIANTS.items())
            if args.variants:
                chosen = [chosen[int(i)] for i in args.variants.split(",")]
            for label, (strategy, views, scale) in chosen:
                config = TrainConfig(
                    backbone="efficientnet_lite0", strategy=strategy, epochs=args.epochs, lr=args.lr,
                    image_size=args.px, seed=seed, checkpoint_every_steps=0,
                )  # fmt: skip
                out = Path(args.out) / f"{name}-{args.per_class}-s{seed}" / label.split(" ")[0] / f"{views}-{scale}"
                row = {"dataset": f"{name}-{args.per_class}", "seed": seed, **run_one(label, config, views, scale,
                       train, test, out)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    print("| data | seed | variant | probe val | 1st FT epoch train / val | best val | test | s |")
    print("|---|---|---|---|---|---|---|---|")

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    for r in rows:
        print(
            f"| {r['dataset']} | {r['seed']} | {r['variant']} | {pct(r['probe_val'])} | {pct(r['ft1_train'])} / "
            f"{pct(r['ft1_val'])} | {pct(r['best_val'])} | {pct(r['test'])} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
