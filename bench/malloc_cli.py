"""The `transferkit train` command as a user types it, under tcmalloc (the default when installed) and under the
system allocator (``TRANSFERKIT_MALLOC=system``), taking turns in one script run.

Each run: Lite0 `full` on Fashion-MNIST (``--per-class`` images of each class, 48 or 64 px, batch 128, pad-crop,
one epoch, all 10,000 test images), a cold transferkit cache (a new cache folder per run), wall time of the whole
subprocess, and the epoch's seconds (training, then validation) per training image from its metrics.jsonl (the training
images are 80% of the subset).

    python bench/malloc_cli.py --per-class 500 --sizes 48,64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALLOCATORS = {"tcmalloc (default)": {}, "system": {"TRANSFERKIT_MALLOC": "system"}}


def one_run(fmnist: str, per_class: int, size: int, extra_env: dict, work: Path) -> dict:
    cache, out = Path(tempfile.mkdtemp(dir=work)), Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "TRANSFERKIT_CACHE": str(cache), **extra_env}
    env.pop("LD_PRELOAD", None)
    command = [
        str(Path(sys.executable).with_name("transferkit")), "train", "--fashion-mnist", fmnist,
        "--per-class", str(per_class), "--strategy", "full", "--epochs", "1", "--image-size", str(size),
        "--batch-size", "128", "--augmentation", "pad-crop", "--lr", "5e-4", "--out", str(out), "--name", "run",
        "--quiet",
    ]  # fmt: skip
    load = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "run-001" / "metrics.jsonl").read_text().splitlines()]
    train_images = int(per_class * 10 * 0.8)
    shutil.rmtree(cache), shutil.rmtree(out)
    return {"wall_s": wall, "epoch_ms_per_image": 1000 * rows[-1]["seconds"] / train_images, "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fmnist = os.environ.get("TRANSFERKIT_FMNIST", "/usr/share/datasets/fashion-mnist")
    parser.add_argument("--fashion-mnist", default=fmnist)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--sizes", default="48,64")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="malloc-cli-"))
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        for round_ in range(1, args.rounds + 1):
            for name, extra in ALLOCATORS.items():
                row = {"size": size, "round": round_, "allocator": name}
                row.update(one_run(args.fashion_mnist, args.per_class, size, extra, work))
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\n| size | round | allocator | epoch ms/image | wall s (cold cache, whole command) | load |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['size']} px | {r['round']} | {r['allocator']} | {r['epoch_ms_per_image']:.2f} | {r['wall_s']:.1f} |"
            f" {r['load']:.1f} |"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
