"""Does the strategy advisor pick the strategy that wins? And does LogME rank the backbones right?

For each dataset — Fashion-MNIST subsets of several sizes, and generated tile textures that ImageNet
features fit badly — the script runs the advisor (EfficientNet-Lite0), then trains every strategy with
the same settings (epochs by size, image size, learning rates from the advice) and evaluates each on a
held-out test set. It reports whether the advised strategy was the best or within 1 point of it, and
the Kendall tau between the LogME ranking of efficientnet_lite0/1/2 and their linear-probe accuracies.

    python bench/advisor.py --fmnist /usr/share/datasets/fashion-mnist --out runs/bench-advisor

Results (JSON per dataset, and a markdown table at the end) go to ``--out``; the table is in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from transferkit import TrainConfig, train_run
from transferkit.advise import advise, partial_depth, rank_backbones
from transferkit.data import ImageSource, fashion_mnist, per_class_subset
from transferkit.evaluate import evaluate_run
from transferkit.models import STRATEGIES

BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def tile_textures(per_class: int, seed: int, px: int = 48) -> ImageSource:
    """Four classes, each a fixed random 4 x 4 binary tile repeated over the image.

    Every image has a random shift, random foreground and background colours and pixel noise, so only the
    fine-grained tile pattern tells the classes apart: a local, high-frequency cue that ImageNet's
    deepest features pool away (their LogME falls after the middle stages), while a network that trains
    its later stages on the data picks it up quickly.
    """
    protos = np.random.default_rng(1234).integers(0, 2, size=(4, 4, 4)).astype(np.float32)
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for cls, proto in enumerate(protos):
        for _ in range(per_class):
            dy, dx = rng.integers(0, 4, 2)
            tile = np.tile(proto, (px // 4 + 1, px // 4 + 1))[dy : dy + px, dx : dx + px, None]
            fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            img = tile * fg + (1 - tile) * bg + rng.normal(0, 30, (px, px, 3))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(cls)
    return ImageSource([f"tile-{c}" for c in range(4)], np.array(labels), arrays=np.stack(images), name="tiles")


def fmnist_sets(directory: str, per_class: int, val_per_class: int, test_per_class: int):
    """Disjoint train and validation subsets of the Fashion-MNIST training set, and a test subset."""
    pool = fashion_mnist(directory, "train")
    chosen = per_class_subset(pool.labels, per_class + val_per_class, seed=0)
    rng = np.random.default_rng(0)
    train_idx, val_idx = [], []
    for cls in range(len(pool.classes)):
        idx = rng.permutation(chosen[pool.labels[chosen] == cls])
        val_idx += list(idx[:val_per_class])
        train_idx += list(idx[val_per_class:])
    test = fashion_mnist(directory, "test")
    test = test.subset(per_class_subset(test.labels, test_per_class, seed=0))
    return pool.subset(np.array(train_idx)), pool.subset(np.array(val_idx)), test


def run_dataset(name, train, val, test, *, epochs, px, out: Path, backbones: list[str]) -> dict:
    """Advise, train every strategy, rank the backbones; returns every figure."""
    start = time.perf_counter()
    advice = advise(train, BACKBONES[0], image_size=px)
    advise_seconds = time.perf_counter() - start
    print(f"\n=== {name}: {len(train)} train / {len(val)} val / {len(test)} test images, {epochs} epochs, {px} px")
    print(advice.explain())
    freeze = advice.freeze or partial_depth(advice.measurements.stage_logme)
    base = TrainConfig(
        backbone=BACKBONES[0],
        epochs=epochs,
        lr=advice.lr,
        head_lr_mult=advice.head_lr_mult,
        scratch_lr_mult=advice.scratch_lr_mult,
        image_size=px,
        warmup_epochs=0.5,
        device="cpu",
        checkpoint_every_steps=0,
        seed=0,
    )
    results = {}
    for strategy in STRATEGIES:
        depth = freeze if strategy == "partial" else None
        config = TrainConfig(**{**base.to_dict(), "strategy": strategy, "freeze": depth})
        results[strategy] = _train_and_test(config, train, val, test, out / name / strategy)
        done = results[strategy]
        print(f"{strategy:>12}: test {100 * done['test_acc']:.2f}%  ({done['seconds']:.0f} s)")
    best = max(results, key=lambda s: results[s]["test_acc"])
    gap = 100 * (results[best]["test_acc"] - results[advice.strategy]["test_acc"])

    ranking = rank_backbones(train, backbones, image_size=px)
    probe_acc = {}
    for score in ranking:
        config = TrainConfig(**{**base.to_dict(), "strategy": "linear-probe", "backbone": score.backbone})
        probe_acc[score.backbone] = _train_and_test(config, train, val, test, out / name / f"probe-{score.backbone}")
    tau = _kendall([s.logme for s in ranking], [probe_acc[s.backbone]["test_acc"] for s in ranking])
    record = {
        "dataset": name,
        "train_images": len(train),
        "per_class": int(np.bincount(train.labels).min()),
        "epochs": epochs,
        "image_size": px,
        "advice": advice.to_dict(),
        "advise_seconds": advise_seconds,
        "partial_freeze": freeze,
        "strategies": results,
        "best": best,
        "advised": advice.strategy,
        "gap_points": gap,
        "within_1_point": gap <= 1.0,
        "backbones": [{**s.to_dict(), "probe_test_acc": probe_acc[s.backbone]["test_acc"]} for s in ranking],
        "kendall_tau": tau,
    }
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"advised {advice.strategy}, best {best} ({gap:+.2f} points); Kendall tau {tau:.2f}")
    return record


def _train_and_test(config: TrainConfig, train, val, test, run_dir: Path) -> dict:
    result = train_run(config, train, val, run_dir=run_dir)
    metrics, _ = evaluate_run(run_dir, test)
    return {"val_acc": result.best_val_acc, "test_acc": metrics.accuracy, "seconds": result.seconds}


def _kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return float(tau) if not math.isnan(tau) else 0.0


def table(records: list[dict]) -> str:
    strategies = list(STRATEGIES)
    head = ["dataset", "per class", "probe gain", "LogME drop", "regime", "advised", *strategies, "best", "gap", "tau"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        m = r["advice"]["measurements"]
        stages = m["stage_logme"]
        accs = [f"{100 * r['strategies'][s]['test_acc']:.1f}" for s in strategies]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["dataset"],
                    str(r["per_class"]),
                    f"{m['probe_gain']:.2f}" if m["probe_gain"] is not None else "-",
                    f"{max(stages) - stages[-1]:.3f}",
                    r["advice"]["regime"],
                    r["advised"] + (f" K={r['advice']['freeze']}" if r["advice"]["freeze"] else ""),
                    *accs,
                    r["best"],
                    f"{r['gap_points']:.1f}",
                    f"{r['kendall_tau']:.2f}",
                ]
            )
            + " |"
        )
    hits = sum(r["within_1_point"] for r in records)
    exact = sum(r["best"] == r["advised"] for r in records)
    taus = [r["kendall_tau"] for r in records]
    lines.append("")
    lines.append(
        f"advised strategy best in {exact}/{len(records)}, best or within 1 point in {hits}/{len(records)}; "
        f"Kendall tau mean {np.mean(taus):.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST IDX folder")
    parser.add_argument("--sizes", default="10,120", help="training images per class")
    parser.add_argument("--epochs", default="6,3", help="epochs for each size")
    parser.add_argument("--px", type=int, default=32, help="image size for every run")
    parser.add_argument("--datasets", default="fmnist,tiles", help="fmnist, tiles or both")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="backbones to rank")
    parser.add_argument("--out", default="runs/bench-advisor", help="folder for runs and results")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()

    import torch

    # On a shared machine two contended intra-op threads ran EfficientNet-Lite0 steps ~8x slower than one.
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    epochs = [int(e) for e in args.epochs.split(",")]
    backbones = args.backbones.split(",")
    start = time.perf_counter()
    records = []
    for family in args.datasets.split(","):
        for per_class, n_epochs in zip(sizes, epochs, strict=True):
            if family == "fmnist":
                train, val, test = fmnist_sets(args.fmnist, per_class, 10, 30)
            else:
                train, val, test = (tile_textures(n, seed, args.px) for n, seed in ((per_class, 0), (10, 1), (50, 2)))
            name = f"{family}-{per_class}"
            record = run_dataset(name, train, val, test, epochs=n_epochs, px=args.px, out=out, backbones=backbones)
            records.append(record)
            (out / "table.md").write_text(table(records) + "\n")
    print("\n" + table(records))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
