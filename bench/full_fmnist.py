"""Full Fashion-MNIST fine-tuning on a CPU within a wall-time budget: test accuracy and minutes, end to end.

Trains EfficientNet-Lite0 (default) from its ImageNet weights with transferkit's large-data recipe on the 60,000
training images (a stratified 2% is held out to pick the best epoch, so the test set never influences the
model), then evaluates that checkpoint on the 10,000 test images. The clock runs from the start of this script
(reading the IDX files, decoding to the training size, timing steps, training, testing) to the test accuracy.

    python bench/full_fmnist.py                          # 48 px, 45 min budget (BENCHMARKS.md, 2026-11-23)
    python bench/full_fmnist.py --size 64 --ema 0.999 --threads 1 --epochs 16 --budget 57m --seed 0  # 94.15%
    python bench/full_fmnist.py --size 80 --ema 0.999 --epochs 16 --budget 57m --tta choose  # 94.82%, both cores
    python bench/full_fmnist.py --budget 10m --limit 6000 # a short run that checks the script works
    torchrun --nproc_per_node 2 bench/full_fmnist.py --threads 1 --run-dir runs/fmnist  # one run, a process per core

Under torchrun every process trains its slice of each batch and rank 0 alone tests and prints; `--run-dir` is
then required, since the processes must share one run folder.

Prints every figure and writes them to <run-dir>/bench.json; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

BEGAN = time.perf_counter()

from transferkit._malloc import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as the `transferkit` command does: tcmalloc when installed, before torch is imported

import torch  # noqa: E402

from transferkit import TrainConfig, train_run  # noqa: E402  (the clock above includes importing torch and us)
from transferkit.data import fashion_mnist, per_class_subset  # noqa: E402
from transferkit.data.split import stratified_split  # noqa: E402
from transferkit.evaluate import evaluate_run  # noqa: E402
from transferkit.train.loop import EpochResult  # noqa: E402
from transferkit.train.rundir import RunDir  # noqa: E402

FMNIST = Path(os.environ.get("TRANSFERKIT_FMNIST", "/usr/share/datasets/fashion-mnist"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--strategy", default="full", choices=["full", "lp-ft"])
    parser.add_argument("--size", type=int, default=48, help="training image size in pixels")
    parser.add_argument("--epochs", type=int, default=40, help="at most this many epochs; the budget decides")
    parser.add_argument("--budget", default="45m", help="wall-time budget of the training (e.g. 55m)")
    parser.add_argument("--lr", type=float, default=3e-4, help="learning rate of pretrained layers (head x10)")
    parser.add_argument("--erase", type=float, default=0.0, help="random-erasing fraction")
    parser.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights per step (0: none)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    parser.add_argument("--val-fraction", type=float, default=0.02)
    parser.add_argument("--limit", type=int, default=None, help="use this many training images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default=None, help="default: a new temporary folder")
    parser.add_argument(
        "--tta", default="none", choices=["none", "flip", "choose"],
        help="test-time augmentation; choose: flip if it scores higher on the held-out validation images",
    )  # fmt: skip
    parser.add_argument("--test-only", action="store_true", help="test the trained run in --run-dir again")
    args = parser.parse_args()

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    train = fashion_mnist(FMNIST, "train")
    test = fashion_mnist(FMNIST, "test")
    if args.limit:
        train = train.subset(per_class_subset(train.labels, args.limit, seed=args.seed))
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not args.run_dir:
        parser.error("under torchrun give --run-dir: every process must write to the same run folder")
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="full-fmnist-")) / "run"
    config = TrainConfig(
        backbone=args.backbone,
        strategy=args.strategy,
        epochs=args.epochs,
        image_size=args.size,
        lr=args.lr,
        random_erase=args.erase,
        ema=args.ema,
        threads=args.threads,
        val_fraction=args.val_fraction,
        time_budget=args.budget,
        seed=args.seed,
        checkpoint_every_steps=0,
    )
    if rank == 0:
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {world} process(es), "
            f"torch {torch.__version__}"
        )
        print(f"config: {json.dumps({k: v for k, v in config.to_dict().items() if v is not None})}")
    result = run_result(run_dir) if args.test_only else train_run(config, train, run_dir=run_dir)
    trained = time.perf_counter() - BEGAN
    if rank != 0:
        return  # rank 0 tests the checkpoint it wrote
    if world > 1:
        torch.set_num_threads(os.cpu_count() or 1)  # the other processes are done: the test pass takes every core
    tta, val_by_tta = args.tta, {}
    if tta == "choose":  # decided on the validation images the run held out, never on the test set
        _, val_idx = stratified_split(train.labels, args.val_fraction, args.seed, names=list(train.classes))
        val = train.subset(val_idx)
        for mode in ("none", "flip"):
            val_by_tta[mode] = evaluate_run(run_dir, val, which="best", tta=mode, split="val")[0].accuracy
        tta = "flip" if val_by_tta["flip"] > val_by_tta["none"] else "none"
        print(f"flip TTA on validation: {100 * val_by_tta['none']:.2f}% -> {100 * val_by_tta['flip']:.2f}%: {tta}")
    metrics, _ = evaluate_run(run_dir, test, which="best", tta=tta)
    total = time.perf_counter() - BEGAN
    data = json.loads((run_dir / "data.json").read_text())
    figures = {
        "test_acc": metrics.accuracy,
        "test_images": len(test),
        "train_images": data["train"]["n_images"],
        "val_images": data["val"]["n_images"],
        "best_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "tta": tta,
        "val_acc_by_tta": val_by_tta,
        "processes": world,
        "minutes_to_trained": trained / 60,
        "minutes_end_to_end": total / 60,
        "epochs": [
            {"epoch": h.epoch, "phase": h.phase, "val_acc": h.val_acc, "train_loss": h.train_loss, "s": h.seconds}
            for h in result.history
        ],
        "config": result_config(run_dir),
    }
    figures_file = run_dir / ("bench-retest.json" if args.test_only else "bench.json")  # keeps the timed run's
    figures_file.write_text(json.dumps(figures, indent=2))
    print(
        f"\nFashion-MNIST test accuracy {100 * metrics.accuracy:.2f}% ({len(test):,} images; trained on "
        f"{data['train']['n_images']:,}, {data['val']['n_images']:,} held out), best epoch "
        f"{result.best_epoch} of {len(result.history)}; {total / 60:.1f} min end to end "
        f"({trained / 60:.1f} min to the trained model). Figures: {figures_file}"
    )


def run_result(run_dir: Path) -> SimpleNamespace:
    """What this script reads of a `RunResult`, read back from a finished run's directory (for --test-only)."""
    done = json.loads((run_dir / "summary.json").read_text())
    history = [EpochResult.from_row(row) for row in RunDir(run_dir).metrics()]
    return SimpleNamespace(best_val_acc=done["best_val_acc"], best_epoch=done["best_epoch"], history=history)


def result_config(run_dir: Path) -> dict:
    return TrainConfig.from_yaml(run_dir / "config.yaml").to_dict()


if __name__ == "__main__":
    main()
