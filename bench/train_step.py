"""Training-step time of EfficientNet-Lite0 on the CPU: where it goes, and what each speed lever does to it.

Prints every figure; nothing here is a test. For each image size and strategy (batch 128, random images):

(a) a profile of plain eager and of transferkit's step (`train_one_epoch`, channels-last, the machine's depthwise
    kernels, BatchNorm statistics kept as in pretrained runs), before and with BatchNorm folded into the
    convolutions (`fold_bn`, now the default): time per operator class (depthwise / pointwise / other
    convolution forward and backward, BatchNorm, activation, optimizer, loss, the rest of the ops, and the time
    outside any operator: Python and the loop's bookkeeping), plus the data path (one augmented batch from a uint8
    array, as `ArrayBatches` makes it).
(b) ms per image and the fraction of the step's FLOP limit (3 x 0.8 GFLOP x (size/224)^2 per image at
    190 GFLOP/s: 0.6 ms at 48 px) for plain PyTorch eager (NCHW, ``model.train()``, AdamW, loss.backward()),
    transferkit as it was before `fold_bn`, and that with each lever changed on its own. Variants take turns step
    by step, in the same process on the same batch, and each figure is the median of its steps, so a change of load
    hits them alike; the load average is printed before and after.

    python bench/train_step.py                          # 48, 64, 96 px; full and partial (first 4 stages frozen)
    python bench/train_step.py --sizes 48 --rounds 3    # shorter
    python bench/train_step.py --compile                # also torch.compile (Inductor), compile time counted
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from transferkit.data import Preprocessing
from transferkit.data.batches import ArrayBatches
from transferkit.data.feature_cache import cache_root
from transferkit.data.sources import ImageSource
from transferkit.models import build_model
from transferkit.models.freezing import apply_freeze, plan_freeze
from transferkit.train._depthwise import fast_depthwise
from transferkit.train._fold_bn import folded_batchnorm
from transferkit.train._kernel_choices import KernelChoices
from transferkit.train.loop import StepSettings, train_one_epoch
from transferkit.train.optim import build_scheduler

BACKBONE = "efficientnet_lite0"
BASE = {
    "channels_last": True, "fast_depthwise": True, "keep_bn_stats": True, "fold_bn": False, "adamw": {}, "threads": None
}  # fmt: skip
LEVERS = {
    "transferkit before": {},
    "+ BatchNorm folded (new default)": {"fold_bn": True},
    "+ BatchNorm folded + AdamW fused": {"fold_bn": True, "adamw": {"fused": True}},
    "+ AdamW foreach": {"adamw": {"foreach": True}},
    "+ AdamW fused": {"adamw": {"fused": True}},
    "- channels-last (NCHW)": {"channels_last": False},
    "- fast depthwise gradients": {"fast_depthwise": False},
    "- BatchNorm statistics kept (batch statistics)": {"keep_bn_stats": False},
    "+ 1 thread": {"threads": 1},
}


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


class Variant:
    """One way of training: a private copy of the model, its optimiser, and how a step is taken."""

    def __init__(self, name: str, model: nn.Module, batch: tuple, settings: dict, kernels: KernelChoices, plain=False):
        self.name, self.plain, self.settings, self.kernels = name, plain, settings, kernels
        self.model = copy.deepcopy(model)
        if settings["channels_last"] and not plain:
            self.model = self.model.to(memory_format=torch.channels_last)
        fmt = torch.channels_last if settings["channels_last"] and not plain else torch.contiguous_format
        self.batch = (batch[0].contiguous(memory_format=fmt), batch[1])
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-4, **({} if plain else settings["adamw"]))
        self.scheduler = build_scheduler(self.optimizer, total_steps=10_000, warmup_steps=0)
        self.step_settings = StepSettings(keep_bn_stats=settings["keep_bn_stats"])
        self.loss_fn = nn.CrossEntropyLoss()
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.compiled = None
        # Entered once, as a run enters them once per phase (folding finds its pairs on the first call).
        self.stack = ExitStack()
        if not plain:
            fast = settings["fast_depthwise"]
            self.stack.enter_context(fast_depthwise(self.model, fast, kernels))
            self.stack.enter_context(folded_batchnorm(self.model, settings["fold_bn"], kernels if fast else None))

    def timed_step(self) -> None:
        """One step, recording its wall time and the CPU time of this process (all its threads)."""
        cpu = time.process_time()
        self.times.append(self.step(1))
        self.cpu_times.append(time.process_time() - cpu)

    def step(self, steps: int = 1) -> float:
        threads = torch.get_num_threads()
        if self.settings["threads"]:
            torch.set_num_threads(self.settings["threads"])
        try:
            return self._step(steps)
        finally:
            torch.set_num_threads(threads)

    def _step(self, steps: int) -> float:
        began = time.perf_counter()
        if self.plain:
            self.model.train()
            x, y = self.batch
            for _ in range(steps):
                self.optimizer.zero_grad()
                self.loss_fn(self.model(x), y).backward()
                self.optimizer.step()
        else:
            model = self.compiled if self.compiled is not None else self.model  # a compiled module has no truth value
            train_one_epoch(model, [self.batch] * steps, self.optimizer, self.scheduler, self.step_settings)
        return (time.perf_counter() - began) / steps


# --- the profile -------------------------------------------------------------------------------------------------

_CONV_FWD = {"aten::convolution", "aten::_convolution", "aten::mkldnn_convolution", "aten::conv2d"}
_NORM = ("batch_norm", "BatchNorm")
_ACT = ("hardtanh", "relu", "clamp", "Hardtanh", "Relu", "silu", "hardswish")
_LOSS = ("cross_entropy", "log_softmax", "nll_loss", "LogSoftmax", "NllLoss")


def _conv_kind(shapes) -> str:
    weight = shapes[1] if len(shapes) > 1 else []
    if len(weight) == 4 and weight[1] == 1 and weight[0] > 1:
        return "depthwise"
    if len(weight) == 4 and weight[2:] == [1, 1]:
        return "pointwise"
    return "other"


def _classify(event, memo: dict) -> str:
    """Operator class of a profiler event: from its own name, else its nearest classified ancestor."""
    if event.id in memo:
        return memo[event.id]
    name = event.name
    label = None
    if "Optimizer.step" in name or "Optimizer.zero_grad" in name:
        label = "optimizer (AdamW step, zero_grad)"
    elif "DepthwiseConvBackward" in name:
        label = "depthwise conv backward"
    elif name == "aten::convolution_backward":
        shapes = event.input_shapes[1:] if event.input_shapes else []
        label = f"{_conv_kind(shapes)} conv backward"
    elif name in _CONV_FWD:
        label = f"{_conv_kind(event.input_shapes or [])} conv forward"
    elif any(k in name for k in _NORM):
        label = "BatchNorm (forward + backward)"
    elif any(k in name for k in _ACT):
        label = "activation (forward + backward)"
    elif any(k in name for k in _LOSS):
        label = "loss"
    elif event.cpu_parent is not None:
        label = _classify(event.cpu_parent, memo)
    label = label or "other ops (add, pad, copies, grad check)"
    memo[event.id] = label
    return label


def profile_step(variant: Variant, steps: int) -> tuple[dict[str, float], float]:
    """Seconds per step by operator class (self CPU time of the main thread's operators), and wall time per step."""
    variant.step(1)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        wall = variant.step(steps)
    memo: dict = {}
    classes: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.device_type.name == "CPU":
            classes[_classify(event, memo)] += event.self_cpu_time_total / 1e6 / steps
    classes["outside operators (Python, loop bookkeeping)"] = max(0.0, wall - sum(classes.values()))
    return dict(classes), wall


def data_path_seconds(size: int, batch: int, repeats: int = 3) -> float:
    """One augmented training batch (pad-crop, flip, normalise, channels-last) from a uint8 array of `size` px."""
    rng = np.random.default_rng(0)
    source = ImageSource(
        classes=[str(i) for i in range(10)],
        labels=rng.integers(0, 10, 2048),
        arrays=rng.integers(0, 256, (2048, size, size), dtype=np.uint8),
    )
    pre = Preprocessing(image_size=size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    batches = ArrayBatches(source, pre, train=True, padding=size // 8)
    times = []
    for r in range(repeats + 1):
        began = time.perf_counter()
        batches[[(int(i), r) for i in rng.choice(2048, batch, replace=False)]]
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


# --- the run -----------------------------------------------------------------------------------------------------


def run(size: int, strategy: str, args: argparse.Namespace, kernels: KernelChoices) -> None:
    torch.manual_seed(0)
    model = build_model(BACKBONE, 10, pretrained=False).model
    if strategy == "partial":
        apply_freeze(model, plan_freeze(model, stages=args.freeze))
    batch = (torch.randn(args.batch, 3, size, size), torch.randint(0, 10, (args.batch,)))
    limit = 3 * args.gflops_224 * (size / 224) ** 2 / args.cpu_gflops * 1e3  # ms per image
    print(f"\n## {size} px, {strategy}, batch {args.batch}: limit {limit:.2f} ms/image; load {load()}", flush=True)

    variants = [Variant("plain PyTorch eager", model, batch, BASE, kernels, plain=True)]
    for name, change in LEVERS.items():
        if args.levers and name != "transferkit before" and not any(k in name for k in args.levers.split(",")):
            continue
        variants.append(Variant(name, model, batch, {**BASE, **change}, kernels))
    if args.compile:
        compiled = Variant(
            "+ BatchNorm folded + torch.compile (inductor)", model, batch, {**BASE, "fold_bn": True}, kernels
        )
        began = time.perf_counter()
        compiled.compiled = torch.compile(compiled.model)
        try:
            compiled.step(2)  # the first steps compile forward and backward
            print(f"    torch.compile: first two steps took {time.perf_counter() - began:.0f} s (compiling)")
            variants.append(compiled)
        except Exception as exc:  # noqa: BLE001 - a failure to compile is a result to print
            print(f"    torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    for v in variants:
        v.step(1)  # warm-up: buffers, oneDNN primitives, new kernel shapes
    for _ in range(args.rounds):
        for v in variants:
            v.timed_step()

    before = next(v for v in variants if v.name == "transferkit before")
    base, eager = statistics.median(before.times), statistics.median(variants[0].times)
    base_cpu, eager_cpu = statistics.median(before.cpu_times), statistics.median(variants[0].cpu_times)
    # On a loaded machine the wall time mostly measures the other jobs; the process's CPU time (both threads) is
    # the work this step did, and its ratios are the steadier figure.
    print(
        f"| variant | ms/image (wall) | vs before | vs eager | of the limit ({limit:.2f} ms) "
        "| CPU ms/image | vs before (CPU) | vs eager (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        t, c = statistics.median(v.times), statistics.median(v.cpu_times)
        ms, cpu_ms = t / args.batch * 1e3, c / args.batch * 1e3
        print(
            f"| {v.name} | {ms:.2f} | {base / t:.2f}x | {eager / t:.2f}x | {100 * limit / ms:.0f}% "
            f"| {cpu_ms:.2f} | {base_cpu / c:.2f}x | {eager_cpu / c:.2f}x |"
        )

    if not args.no_profile and str(size) in args.profile_sizes.split(","):
        profiled = [v for v in variants if v.name in ("plain PyTorch eager", "transferkit before")]
        best = [v for v in variants if v.name == "+ BatchNorm folded (new default)"]
        columns = {v.name: profile_step(v, args.profile_steps) for v in profiled + best}
        data = data_path_seconds(size, args.batch)
        labels = sorted({k for classes, _ in columns.values() for k in classes})
        print("\n| ms per step | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for label in labels:
            row = " | ".join(f"{1e3 * classes.get(label, 0.0):.0f}" for classes, _ in columns.values())
            print(f"| {label} | {row} |")
        print("| **step (wall, profiled)** | " + " | ".join(f"**{1e3 * w:.0f}**" for _, w in columns.values()) + " |")
        print(f"| data path (one augmented batch, not in the step) | {1e3 * data:.0f} | | |")
    print(f"load after: {load()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="48,64,96")
    parser.add_argument("--strategies", default="full,partial")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--freeze", type=int, default=4, help="partial: frozen leading stages")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per variant (median)")
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--levers", default="", help="comma-separated words picking levers (default: all)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the default step")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--profile-sizes", default="48,64,96", help="sizes that get the profile (a)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gflops-224", type=float, default=0.8)
    parser.add_argument("--cpu-gflops", type=float, default=190.0)
    parser.add_argument("--cache-dir", default=None, help="where the machine's depthwise kernel choices are kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels = KernelChoices.for_machine(cache_root(args.cache_dir))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, kernel choices {kernels.path}")
    print(f"load average (1/5/15 min) before: {load()}")
    for size in (int(s) for s in args.sizes.split(",")):
        for strategy in args.strategies.split(","):
            run(size, strategy, args, kernels)
    print(f"\nload average after: {load()}; kernel file {Path(kernels.path).name}")


if __name__ == "__main__":
    main()
