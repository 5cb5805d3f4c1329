"""CPU speed of transferkit's frozen-feature path against plain PyTorch, on Fashion-MNIST with EfficientNet-Lite0.

Prints every figure; nothing here is a test. Three parts:

(a) feature extraction, images/s: plain torch eager (``model(x)`` under no_grad, NCHW) against transferkit's
    engines (torch channels-last + inference_mode, onnxruntime, MNN), same batch, same size, same process,
    preprocessed inputs for both; and the fraction of the CPU's FLOP ceiling that is.
(b) time to a target test accuracy: transferkit linear-probe (L-BFGS head) and lp-ft, end to end from a cold
    cache (extraction of train, val and test images included), against a plain timm loop written the way
    classic tutorials do it (new fc, head lr x10, SGD, images decoded and resized every epoch).
(c) ``--rss``: peak resident memory of extracting features for all 70,000 Fashion-MNIST images (minutes).

    python bench/speed.py                              # (a) and (b) at the defaults
    python bench/speed.py --quick                      # a reduced run that checks the script works
    python bench/speed.py --rss                        # (c) only
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

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from transferkit import TrainConfig, train_run
from transferkit.data import ImageDataset, Preprocessing, build_transforms, fashion_mnist, per_class_subset
from transferkit.engines import feature_runner
from transferkit.models import build_model, preprocessing_config
from transferkit.train.features import _BatchMaker, cached_features

FMNIST = "/usr/share/datasets/fashion-mnist"
BACKBONE = "efficientnet_lite0"


def extraction(args: argparse.Namespace) -> dict:
    """(a) images/s of plain eager torch and of each engine on one preprocessed batch, repeated."""
    built = build_model(BACKBONE, 10)
    model = built.model.eval()
    pre = preprocessing_config(model, built.spec, args.size)
    source = fashion_mnist(args.fmnist, "test").subset(np.arange(args.batch))
    batch = _BatchMaker(source, pre)(range(args.batch))

    def rate(fn) -> float:
        fn()  # warm-up
        start = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        return args.repeats * args.batch / (time.perf_counter() - start)

    def eager() -> None:
        with torch.no_grad():
            model(batch)

    results = {"plain torch eager": rate(eager)}
    with tempfile.TemporaryDirectory() as folder:
        for engine in ("torch", "onnxruntime", "mnn"):
            try:
                runner = feature_runner(engine, model, args.size, batch[:16], Path(folder), f"bench-{args.size}")
            except ImportError as exc:
                print(f"  {engine}: not installed ({exc})")
                continue
            results[f"transferkit {engine}"] = rate(lambda runner=runner: runner(batch))
    ceiling = args.cpu_gflops / (args.gflops_224 * (args.size / 224) ** 2)
    eager_rate = results["plain torch eager"]
    print(f"\n(a) feature extraction, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"    FLOP ceiling {ceiling:.0f} images/s ({args.gflops_224} GFLOP/img at 224 px, {args.cpu_gflops} GFLOP/s)")
    for name, value in results.items():
        print(
            f"    {name:28s} {value:8.1f} images/s  x{value / eager_rate:4.2f} eager  "
            f"{100 * value / ceiling:5.1f}% of ceiling"
        )
    return {"size": args.size, "batch": args.batch, "ceiling": ceiling, "images_per_s": results}


def _fmnist_subsets(args: argparse.Namespace):
    train = fashion_mnist(args.fmnist, "train")
    train = train.subset(per_class_subset(train.labels, args.per_class, seed=0))
    test = fashion_mnist(args.fmnist, "test")
    if args.test_limit:
        test = test.subset(np.arange(args.test_limit))
    return train, test


def transferkit_runs(args: argparse.Namespace, train, test) -> dict:
    """(b) linear-probe and lp-ft, end to end from an empty cache: train, then test accuracy after each epoch."""
    out = {}
    for strategy in ("linear-probe", "lp-ft"):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as runs:
            config = TrainConfig(
                backbone=BACKBONE,
                strategy=strategy,
                epochs=args.lp_epochs if strategy == "linear-probe" else args.lpft_epochs,
                lp_epochs=None if strategy == "linear-probe" else 1,
                image_size=args.size,
                lr=5e-4,
                seed=0,
                device="cpu",
                engine=args.engine,
                cache_dir=cache,
            )
            start = time.perf_counter()
            result = train_run(config, train, run_dir=Path(runs) / "run")
            train_s = time.perf_counter() - start
            model = build_model(BACKBONE, 10, pretrained=False).model
            from transferkit.train import load_checkpoint

            load_checkpoint(Path(runs) / "run" / "best", model)
            pre = Preprocessing.from_dict(json.loads((Path(runs) / "run" / "preprocessing.json").read_text()))
            # Evaluation of the best checkpoint: features of the test images (from its own backbone), then its head.
            feats = torch.from_numpy(
                np.array(cached_features(model, BACKBONE, test, pre, cache_dir=cache, engine=args.engine, what="test"))
            )
            with torch.inference_mode():
                acc = float((model.get_classifier()(feats).argmax(1).numpy() == test.labels).mean())
            total = time.perf_counter() - start
        epochs = [(h.epoch, h.phase, h.val_acc, h.seconds) for h in result.history]
        out[strategy] = {"train_s": train_s, "end_to_end_s": total, "test_acc": acc, "epochs": epochs}
        print(
            f"    transferkit {strategy:12s} test acc {100 * acc:6.2f}%  train {train_s:6.1f} s  "
            f"end to end {total:6.1f} s"
        )
    return out


def plain_loop(args: argparse.Namespace, train, test) -> dict:
    """(b) the tutorial loop: timm model, new fc, SGD with head lr x10, every image decoded each epoch."""
    torch.manual_seed(0)
    built = build_model(BACKBONE, 10)  # the same pretrained weights; timm's own hub download is offline here
    model = built.model
    pre = preprocessing_config(model, built.spec, args.plain_size)
    tf_train = build_transforms(pre, train=True)
    tf_test = build_transforms(pre, train=False)
    train_loader = DataLoader(ImageDataset(train, tf_train), batch_size=32, shuffle=True)
    test_loader = DataLoader(ImageDataset(test, tf_test), batch_size=64)
    head = list(model.get_classifier().parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.SGD([{"params": body, "lr": 0.01}, {"params": head, "lr": 0.1}], momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    clock, rows = 0.0, []
    for epoch in range(1, args.plain_epochs + 1):
        start = time.perf_counter()
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        clock += time.perf_counter() - start  # the clock stops while the test set is evaluated
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += int((model(x).argmax(1) == y).sum())
        acc = correct / len(test)
        rows.append({"epoch": epoch, "train_s": clock, "test_acc": acc})
        print(f"    plain loop epoch {epoch}: test acc {100 * acc:6.2f}%  training time so far {clock:6.1f} s")
    return {"size": args.plain_size, "epochs": rows}


def time_to(rows: list[tuple[float, float]], target: float) -> float | None:
    """First (time, acc) row reaching `target`."""
    return next((t for t, acc in rows if acc >= target), None)


def rss_child(args: argparse.Namespace) -> None:
    built = build_model(BACKBONE, 10)
    model = built.model.eval()
    pre = preprocessing_config(model, built.spec, args.size)
    start = time.perf_counter()
    n = 0
    with tempfile.TemporaryDirectory() as cache:
        for split in ("train", "test"):
            source = fashion_mnist(args.fmnist, split)
            cached_features(model, BACKBONE, source, pre, cache_dir=cache, engine=args.engine, what=split)
            n += len(source)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": n, "seconds": time.perf_counter() - start, "peak_rss_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmnist", default=FMNIST)
    parser.add_argument("--size", type=int, default=128, help="transferkit image size (px)")
    parser.add_argument("--plain-size", type=int, default=224, help="image size of the plain loop (px)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engine", default="auto", help="transferkit's feature engine for (b) and (c)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--test-limit", type=int, default=0, help="use only the first N test images (0: all)")
    parser.add_argument("--lp-epochs", type=int, default=5)
    parser.add_argument("--lpft-epochs", type=int, default=3)
    parser.add_argument("--plain-epochs", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.84)
    parser.add_argument("--gflops-224", type=float, default=0.8, help="forward GFLOP per image at 224 px")
    parser.add_argument("--cpu-gflops", type=float, default=190.0, help="measured CPU ceiling, GFLOP/s")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a, b, plain")
    parser.add_argument("--rss", action="store_true", help="(c) only: peak RSS of extracting all 70,000 images")
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check the script runs")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args)
    if args.quick:
        args.size, args.plain_size, args.repeats, args.batch = 64, 64, 1, 32
        args.per_class, args.test_limit, args.lp_epochs, args.lpft_epochs, args.plain_epochs = 10, 200, 2, 2, 1
    if args.rss:
        argv = [sys.executable, __file__, "--rss-child", "--size", str(args.size), "--engine", args.engine]
        out = subprocess.run([*argv, "--fmnist", args.fmnist], capture_output=True, text=True, check=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        print(
            f"(c) {figures['images']:,} images at {args.size} px in {figures['seconds']:.0f} s; "
            f"peak RSS {figures['peak_rss_mib']:.0f} MiB"
        )
        return None
    skip = set(args.skip.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "a" not in skip:
        extraction(args)
    if "b" in skip:
        return None
    train, test = _fmnist_subsets(args)
    print(f"\n(b) Fashion-MNIST {len(train)} training images (20% held out for validation), {len(test)} test images")
    ours = transferkit_runs(args, train, test)
    if "plain" in skip:
        return None
    plain = plain_loop(args, train, test)
    plain_rows = [(r["train_s"], r["test_acc"]) for r in plain["epochs"]]
    best = max(acc for _, acc in plain_rows)
    t_plain_best = time_to(plain_rows, best)
    print(f"\n    plain loop best {100 * best:.2f}% after {t_plain_best:.1f} s of training ({plain['size']} px)")
    for strategy, r in ours.items():
        reached = r["end_to_end_s"] if r["test_acc"] >= best else None
        ratio = f"plain/transferkit = {t_plain_best / reached:.1f}x" if reached else "not reached"
        target = f"target {100 * args.target:.0f}%: " + ("reached" if r["test_acc"] >= args.target else "not reached")
        print(
            f"    transferkit {strategy}: {100 * r['test_acc']:.2f}% in {r['end_to_end_s']:.1f} s end to end; "
            f"time to the plain loop's best: {ratio}; {target}"
        )
    t_target = time_to(plain_rows, args.target)
    print(f"    plain loop time to {100 * args.target:.0f}%: " + (f"{t_target:.1f} s" if t_target else "not reached"))
    return None


if __name__ == "__main__":
    main()
