"""Does the learning-rate finder's suggestion train as well as the default and a small grid? Do the imbalance
options help a long-tailed dataset?

Two Fashion-MNIST training sets, both evaluated on all 10,000 test images: 100 images per class, and a
long-tailed subset (200 images in the first class down to 5 in the last, geometric). For each: the range test's
suggestion (`find_lr`, valley rule), then EfficientNet-Lite0 at 48 px, ``linear-probe`` with the mini-batch head
(``head_solver: minibatch``: AdamW on the cached features, the head at 10x ``--lr``), trained with the suggested
rate, the default (1e-4) and a grid of three more. (``full`` fine-tuning took 8.7 s per step on the shared 2-core
machine at load 7-8, so its grid did not fit; the mini-batch head is the cheapest setting where the rate matters.)
On the long-tailed set the default rate also trains with ``class_weights: balanced`` and with ``sampler:
balanced``, and the default L-BFGS head plain and weighted; every run keeps its best checkpoint by validation
accuracy (the default), so only the loss or the sampling differs. Figures: test accuracy, balanced accuracy,
macro F1 and the worst class's recall.

    python bench/lr_find_imbalance.py --fmnist /usr/share/datasets/fashion-mnist --out runs/bench-lr

Each run's figures are printed (one JSON line each, also appended to OUT/results.jsonl) as soon as it ends, so an
interrupted benchmark keeps what it measured; the markdown tables at the end are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from transferkit import TrainConfig, train_run
from transferkit.data import fashion_mnist, per_class_subset
from transferkit.evaluate import evaluate_run
from transferkit.train.lr_find import find_lr

GRID = (3e-5, 3e-4, 1e-3)
DEFAULT = 1e-4


def long_tailed(labels: np.ndarray, most: int, fewest: int, seed: int = 0) -> np.ndarray:
    """Indices keeping ``most * (fewest / most) ** (c / (k - 1))`` images of class c (200, 132, ..., 5)."""
    rng = np.random.default_rng(seed)
    k = int(labels.max()) + 1
    keep = []
    for c in range(k):
        n = int(round(most * (fewest / most) ** (c / (k - 1))))
        keep += rng.choice(np.flatnonzero(labels == c), size=n, replace=False).tolist()
    return np.array(sorted(keep))


def _run(name: str, config: TrainConfig, train, test, out: Path, log: Path) -> dict:
    began = time.perf_counter()
    result = train_run(config, train, run_dir=out / name)
    metrics, _ = evaluate_run(result.run_dir, test)
    row = {
        "run": name,
        "lr": config.lr,
        "class_weights": config.class_weights,
        "sampler": config.sampler,
        "head_solver": config.head_solver,
        "best_val_acc": round(result.best_val_acc, 4),
        "test_acc": round(metrics.accuracy, 4),
        "balanced_acc": round(metrics.balanced_accuracy, 4),
        "macro_f1": round(metrics.macro_f1, 4),
        "worst_recall": round(metrics.worst_recall, 4),
        "worst_class": metrics.classes[int(np.argmin(metrics.recall))],
        "seconds": round(time.perf_counter() - began, 1),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(row), flush=True)
    with log.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default="runs/bench-lr")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--only", choices=("balanced", "tailed"), help="one dataset only")
    parser.add_argument("--rule", default="valley", help="the range test's rule (valley, steepest, minimum)")
    parser.add_argument("--suggested-only", action="store_true", help="train only at the suggested rate")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    pool, test = fashion_mnist(args.fmnist, "train"), fashion_mnist(args.fmnist, "test")
    sets = {
        "balanced": pool.subset(per_class_subset(pool.labels, 100, seed=0)),
        "tailed": pool.subset(long_tailed(pool.labels, 200, 5)),
    }
    base = TrainConfig(strategy="linear-probe", head_solver="minibatch", image_size=48, epochs=args.epochs, seed=0)
    for key, train in sets.items():
        if args.only and key != args.only:
            continue
        counts = np.bincount(train.labels, minlength=10).tolist()
        print(f"# {key}: {len(train)} images, per class {counts}; load {os.getloadavg()}", flush=True)
        began = time.perf_counter()
        found = find_lr(base, train, rule=args.rule)
        (out / f"{key}-lr_find.json").write_text(json.dumps(found.to_dict()))
        print(
            json.dumps({"lr_find": key, "rule": args.rule, "suggestion": found.suggestion, "steps": len(found.lrs),
                        "stopped": found.stopped, "seconds": round(time.perf_counter() - began, 1)}),
            flush=True,
        )  # fmt: skip
        rates = [("suggested", found.suggestion), ("default", DEFAULT)]
        rates += [(f"grid-{lr:g}", lr) for lr in GRID]
        if args.suggested_only:
            rates = [(f"suggested-{args.rule}", found.suggestion)]
        elif key == "tailed":  # the imbalance runs first after the two headline rates: they matter more than the grid
            imbalance = ["weighted", "sampler", "lbfgs-plain", "lbfgs-weighted"]
            rates = rates[:2] + [(name, DEFAULT) for name in imbalance] + rates[2:]
        for name, lr in rates:
            extra = {
                "weighted": {"class_weights": "balanced"},
                "sampler": {"sampler": "balanced"},
                "lbfgs-plain": {"head_solver": "lbfgs", "lr": None},
                "lbfgs-weighted": {"head_solver": "lbfgs", "lr": None, "class_weights": "balanced"},
            }.get(name, {})
            config = TrainConfig(**{**base.to_dict(), "lr": lr, **extra})
            _run(f"{key}-{name}", config, train, test, out, log)


if __name__ == "__main__":
    main()
