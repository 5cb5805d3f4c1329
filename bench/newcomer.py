"""A newcomer's first run, timed: the CLI exactly as a user types it, against the plain tutorial way.

Prints every figure; nothing here is a test. The data is Fashion-MNIST 100 images per class written as 28 px
PNG class folders (1,000 training images: the CLI holds out a stratified 20% for validation) and 200 test
images per class (2,000), the way a user would have their own images. Then, in the same run of the script:

- **transferkit**: ``transferkit train TRAIN --test TEST --strategy linear-probe`` with no other flag, in a fresh
  working folder and an empty cache (``TRANSFERKIT_CACHE`` points at a new folder), under ``/usr/bin/time -v``.
- **tutorial**: timm's EfficientNet-Lite0 (the same ImageNet weights), eager PyTorch at 224 px over an
  ``ImageFolder`` (``Resize(224)``, ``ToTensor``, ``Normalize``), pooled features of every training and test
  image under ``no_grad``, then scikit-learn's ``LogisticRegression`` on all 1,000 training images' features.
- **start-up**: ``transferkit --help`` and ``transferkit backbones``, best of three.

Reported: test accuracy, wall seconds, the ratio, and peak RSS of each side (the largest process of each).
Targets: >= 84% test accuracy, >= 5x faster end to end, peak RSS < 2 GiB, start-up <= 1.5 s.

    python bench/newcomer.py                   # the whole comparison (minutes)
    python bench/newcomer.py --skip tutorial   # transferkit and start-up only
    python bench/newcomer.py --args '--image-size 128'   # extra CLI flags, for measuring a setting
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FMNIST = "/usr/share/datasets/fashion-mnist"
TARGETS = {"accuracy": 0.84, "speed-up": 5.0, "rss_gib": 2.0, "start_s": 1.5}

_TUTORIAL = r"""
import sys, time
import numpy as np, torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from transferkit.models import build_model

start = time.perf_counter()
train_dir, test_dir = sys.argv[1], sys.argv[2]
# timm's tf_efficientnet_lite0 with the ImageNet weights (transferkit loads them from the pip package, offline).
model = build_model("efficientnet_lite0", 10).model.eval()
tf = transforms.Compose([transforms.Resize(224), transforms.ToTensor(),
                         transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])])

def features(folder):
    data = datasets.ImageFolder(folder, transform=tf)
    feats, labels = [], []
    with torch.no_grad():
        for x, y in DataLoader(data, batch_size=64):
            feats.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
            labels.append(y.numpy())
    return np.concatenate(feats), np.concatenate(labels)

xtr, ytr = features(train_dir)
xte, yte = features(test_dir)
clf = LogisticRegression(max_iter=1000).fit(xtr, ytr)
print(f"ACCURACY {clf.score(xte, yte):.6f} SECONDS {time.perf_counter() - start:.3f}")
"""


def write_png_folders(root: Path, fmnist: str, per_class: int, test_per_class: int) -> tuple[Path, Path]:
    """Fashion-MNIST as 28 px PNG class folders: ``root/train`` and ``root/test``."""
    from transferkit.data import fashion_mnist, per_class_subset

    folders = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        source = fashion_mnist(fmnist, split)
        picked = per_class_subset(source.labels, n, seed=0)
        folder = root / split
        for i in picked:
            name = re.sub(r"[^A-Za-z0-9]+", "-", source.classes[source.labels[i]])
            (folder / name).mkdir(parents=True, exist_ok=True)
            source.load(int(i)).convert("L").save(folder / name / f"{i:05d}.png")
        folders[split] = folder
    return folders["train"], folders["test"]


def timed(argv: list[str], cwd: Path, env: dict) -> tuple[float, float, str, str]:
    """Wall seconds, peak RSS (MiB, largest process), stdout and stderr of `argv` under /usr/bin/time -v."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *argv], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return wall, int(rss.group(1)) / 1024 if rss else float("nan"), proc.stdout, proc.stderr


def run_transferkit(train: Path, test: Path, work: Path, extra: str) -> dict:
    """The CLI as a user types it, from a fresh folder with an empty cache."""
    cli = shutil.which("transferkit", path=str(Path(sys.executable).parent)) or "transferkit"
    home = Path(tempfile.mkdtemp(prefix="cold-", dir=work))
    env = {**os.environ, "TRANSFERKIT_CACHE": str(home / "cache"), "XDG_CACHE_HOME": str(home / "xdg")}
    argv = [cli, "train", str(train), "--test", str(test), "--strategy", "linear-probe", *shlex.split(extra)]
    print(f"$ {shlex.join(argv[:1] + [Path(a).name if '/' in a else a for a in argv[1:]])}", flush=True)
    wall, rss, out, err = timed(argv, home, env)
    summary = json.loads(next(home.glob("runs/*/summary.json")).read_text())
    lines = [line for line in err.splitlines() if re.search(r"engine|threads|image size|px", line)]
    return {"accuracy": summary["test_acc"], "seconds": wall, "rss_mib": rss, "stdout": out, "notes": lines[:8]}


def run_tutorial(train: Path, test: Path, work: Path) -> dict:
    wall, rss, out, _ = timed([sys.executable, "-c", _TUTORIAL, str(train), str(test)], work, dict(os.environ))
    found = re.search(r"ACCURACY ([\d.]+)", out)
    return {"accuracy": float(found.group(1)), "seconds": wall, "rss_mib": rss}


def start_up(work: Path) -> dict:
    cli = shutil.which("transferkit", path=str(Path(sys.executable).parent)) or "transferkit"
    times = {}
    for command in (["--help"], ["backbones"]):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([cli, *command], cwd=work, capture_output=True, check=True)
            best = min(best, time.perf_counter() - start)
        times[" ".join(["transferkit", *command])] = best
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist", default=FMNIST, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--per-class", type=int, default=100, help="training images per class (default 100)")
    parser.add_argument("--test-per-class", type=int, default=200, help="test images per class (default 200)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: transferkit, tutorial, start-up")
    parser.add_argument("--args", default="", help="extra flags for transferkit train (for measuring a setting)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="newcomer-") as tmp:
        work = Path(tmp)
        train, test = write_png_folders(work / "data", args.fmnist, args.per_class, args.test_per_class)
        results = {}
        if "start-up" not in skip:
            results["start-up"] = start_up(work)
        if "transferkit" not in skip:
            results["transferkit"] = run_transferkit(train, test, work, args.args)
        if "tutorial" not in skip:
            results["tutorial"] = run_tutorial(train, test, work)
    report(results)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def report(results: dict) -> None:
    for name, seconds in results.get("start-up", {}).items():
        ok = "met" if seconds <= TARGETS["start_s"] else "MISSED"
        print(f"{name:24s} {seconds:5.2f} s   (target <= {TARGETS['start_s']} s: {ok})")
    for side in ("transferkit", "tutorial"):
        if side in results:
            r = results[side]
            acc, sec, rss = 100 * r["accuracy"], r["seconds"], r["rss_mib"]
            print(f"{side:12s} test acc {acc:6.2f}%  {sec:7.1f} s  peak RSS {rss:6.0f} MiB")
    tk = results.get("transferkit")
    if tk:
        for line in tk["notes"]:
            print(f"    | {line}")
        print(f"stdout of transferkit train ({len(tk['stdout'].splitlines())} lines):")
        for line in tk["stdout"].splitlines()[:12]:
            print(f"    > {line}")
        acc_ok = "met" if tk["accuracy"] >= TARGETS["accuracy"] else "MISSED"
        rss_ok = "met" if tk["rss_mib"] < TARGETS["rss_gib"] * 1024 else "MISSED"
        print(f"accuracy >= {100 * TARGETS['accuracy']:.0f}%: {acc_ok}; peak RSS < {TARGETS['rss_gib']} GiB: {rss_ok}")
    if tk and "tutorial" in results:
        ratio = results["tutorial"]["seconds"] / tk["seconds"]
        ok = "met" if ratio >= TARGETS["speed-up"] else "MISSED"
        print(f"end to end: {ratio:.2f}x faster than the tutorial way (target >= {TARGETS['speed-up']:.0f}x: {ok})")


if __name__ == "__main__":
    main()
