"""`partial` without augmentation, with and without the frozen-prefix cache: seconds per epoch, accuracy, memory.

EfficientNet-Lite0 on Fashion-MNIST (100 images per class by default, 20% held out for validation), the first
`--freeze` stages frozen, augmentation off. Each variant runs in its own process so that its peak RSS is its own.
Prints every figure; nothing here is a test.

    python bench/prefix_cache.py                 # 96 px, freeze 4 of 8 stages, 3 epochs
    python bench/prefix_cache.py --freeze 6 --size 128
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FMNIST = "/usr/share/datasets/fashion-mnist"


def child(args: argparse.Namespace) -> None:
    from transferkit import TrainConfig, train_run
    from transferkit.data import fashion_mnist, per_class_subset

    train = fashion_mnist(args.fmnist, "train")
    train = train.subset(per_class_subset(train.labels, args.per_class, seed=0))
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(
            strategy="partial",
            freeze=args.freeze,
            epochs=args.epochs,
            image_size=args.size,
            augment=False,
            prefix_cache=args.child == "cached",
            lr=5e-4,
            seed=0,
            cache_dir=str(Path(folder) / "cache"),
        )
        start = time.perf_counter()
        result = train_run(config, train, run_dir=Path(folder) / "run")
        seconds = time.perf_counter() - start
        summary = json.loads((Path(folder) / "run" / "summary.json").read_text())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "run_s": seconds,
        "epoch_s": [h.seconds for h in result.history],
        "val_acc": [h.val_acc for h in result.history],
        "peak_rss_mib": peak,
        "prefix_cache": summary.get("prefix_cache"),
    }
    print("FIGURES " + json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmnist", default=FMNIST)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--freeze", type=int, default=4, help="leading stages frozen (Lite0 has 8)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--child", choices=["cached", "ordinary"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    rows = {}
    for variant in ("ordinary", "cached"):
        argv = [sys.executable, __file__, "--child", variant, "--fmnist", args.fmnist, "--size", str(args.size)]
        argv += ["--freeze", str(args.freeze), "--epochs", str(args.epochs), "--per-class", str(args.per_class)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        rows[variant] = json.loads(next(line for line in out.splitlines() if line.startswith("FIGURES "))[8:])
    print(f"partial, first {args.freeze} stages frozen, no augmentation, {args.size} px, {args.per_class}/class")
    for variant, r in rows.items():
        epochs = " ".join(f"{s:.1f}" for s in r["epoch_s"])
        accs = " ".join(f"{100 * a:.2f}" for a in r["val_acc"])
        cache = r["prefix_cache"]
        where = f"; cache {cache['megabytes']:.0f} MB at {cache['boundary']}" if cache else ""
        print(
            f"  {variant:9s} run {r['run_s']:6.1f} s; epochs (s) {epochs}; val acc (%) {accs}; "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB{where}"
        )
    ordinary, cached = rows["ordinary"], rows["cached"]
    # The cache is filled before the first epoch starts: epoch times compare training, run times include filling.
    per_epoch = sum(ordinary["epoch_s"]) / max(sum(cached["epoch_s"]), 1e-9)
    whole = ordinary["run_s"] / cached["run_s"]
    print(f"  epochs {per_epoch:.1f}x faster with the cache; whole run {whole:.1f}x")
    return None


if __name__ == "__main__":
    main()
