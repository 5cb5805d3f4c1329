"""One training run, from sources to a run directory with checkpoints and metrics."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferkit._console import console
from transferkit.config import TrainConfig, parse_duration
from transferkit.data import ImageDataset, ImageSource
from transferkit.data.batches import ArrayBatches
from transferkit.data.check import preflight
from transferkit.data.decoded import decoded_source
from transferkit.data.transforms import auto_image_size, build_transforms, eval_resize, pad_crop_padding
from transferkit.models import (
    apply_freeze,
    build_model,
    head_keys,
    plan_freeze,
    preprocessing_config,
)
from transferkit.train._budget import EpochCost, measure_epoch, plan_epochs
from transferkit.train._depthwise import fast_depthwise
from transferkit.train._order import EpochBatchSampler, SeededSamples
from transferkit.train._precision import MixedPrecision
from transferkit.train._prefix_cache import cache_prefix
from transferkit.train._probe import probe_features, run_lbfgs_phase
from transferkit.train._resume import ResumePoint, config_changes, read_resume_point, warn
from transferkit.train._rng import restore_rng
from transferkit.train._tracker import PhaseContext, Tracker, catch_interrupts
from transferkit.train.checkpoint import CheckpointError
from transferkit.train.distributed import DistContext, init_distributed
from transferkit.train.loop import EpochProgress, EpochResult, fit
from transferkit.train.optim import build_optimizer, build_scheduler, param_groups
from transferkit.train.rundir import RunDir

__all__ = ["RunResult", "resolve_device", "seed_everything", "train_run"]


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    best_val_acc: float
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)
    seconds: float = 0.0
    trainable_params: int = 0
    frozen_params: int = 0
    stopped_early: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_run(
    config: TrainConfig,
    train_source: ImageSource,
    val_source: ImageSource | None = None,
    *,
    run_dir: str | Path,
    resume: bool | str | Path = False,
) -> RunResult:
    """Fine-tune `config.backbone` on `train_source` and write everything to `run_dir`.

    When `val_source` is None a stratified `config.val_fraction` of the training data is held out.
    Unreadable images are dropped before training (the run stops if they exceed `config.max_bad_fraction`).

    Args:
        resume: Continue the interrupted run in `run_dir` from its `last` training state, exactly where it
            stopped (same sample order, RNG states, optimiser). True reads `last`, falling back to `last.prev`
            with a warning when `last` is damaged; a path to one file of a checkpoint set reads that set only.
    """
    start = time.perf_counter()
    if config.strategy == "auto":  # measure the data first, then train with the advised plan (advice.json)
        from transferkit.advise.auto import resolve_auto

        config = resolve_auto(config, train_source, run_dir, resume=bool(resume))
    config = config.with_recipe(len(train_source))  # batch size, augmentation... for this much data
    # Under torchrun every process runs this function; only rank 0 writes files (and prints).
    dist = init_distributed(config.device)
    dist.check_batch_size(config.batch_size)
    run = RunDir(run_dir)
    with dist.main_first():  # rank 0 may repair a half-renamed checkpoint set before the others read it
        point = read_resume_point(run.path, resume) if resume else None
    if point is not None and int(point.state.get("world_size", 1)) != dist.world_size:
        raise CheckpointError(
            f"cannot resume {run.path} with {dist.world_size} process(es): it was trained with "
            f"{point.state.get('world_size', 1)}; resume with that many (torchrun --nproc_per_node x --nnodes)"
        )
    if point is not None:
        changes = config_changes(point.meta["config"], config.to_dict())
        if changes:
            warn("resuming with settings that differ from the interrupted run's: " + "; ".join(changes))
    seed_everything(config.seed)
    device = dist.device(resolve_device(config.device))
    amp = MixedPrecision(config.precision, device, channels_last=config.channels_last)
    if config.precision != "fp32" and not amp.enabled:
        warn(f"precision {config.precision} applies on CUDA only; training in fp32 on {device}")
    train_source, val_source, check = preflight(
        train_source,
        val_source,
        max_bad_fraction=config.max_bad_fraction,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
    for path, reason in check.bad_images:
        warn(f"skipping {path}: {reason}")
    for message in check.warnings:
        warn(message)
    classes = list(train_source.classes)
    if point is not None and list(point.meta["classes"]) != classes:
        raise CheckpointError(
            f"cannot resume {run.path}: its classes {point.meta['classes']} differ from the data's classes {classes}"
        )

    built = build_model(
        config.backbone,
        len(classes),
        # Resuming overwrites every weight from the checkpoint, so the pretrained source is not read again.
        pretrained=config.strategy != "scratch" and point is None,
        weights_file=config.weights if point is None else None,
        head_init=config.head_init,
        allow_partial_weights=config.allow_partial_weights,
        allow_unsafe_pickle=config.allow_unsafe_pickle,
    )
    model = (dist.sync_batchnorm(built.model, device) if config.sync_bn else built.model).to(device)
    if amp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if point is None:
        console.print(built.report.summary())
        pre = preprocessing_config(model, built.spec, config.image_size, config.crop_pct)
        if config.image_size is None and built.spec.default_size is None:
            pre["image_size"] = auto_image_size(train_source.describe()["image_sizes"], pre["image_size"])
    else:
        _load_weights(model, point)
        pre = dict(point.meta["preprocessing"])
    plan = plan_freeze(model, config.strategy, freeze_stages=config.freeze, freeze_modules=config.freeze_modules)
    apply_freeze(model, plan)
    console.print(
        f"strategy {config.strategy}: {plan.description}; trainable {plan.trainable_params:,} / "
        f"frozen {plan.frozen_params:,} parameters; image size {pre['image_size']} px on {device}"
    )

    if dist.is_main:
        config.to_yaml(run.path / "config.yaml")
        if point is None:
            run.write_json("classes.json", classes)
            run.write_json("load_report.json", built.report.to_dict())
            run.write_json("preprocessing.json", pre)
        run.write_json(
            "data.json",
            {
                "train": train_source.describe(),
                "val": val_source.describe(),
                "freeze_plan": plan.description,
                "skipped_images": [{"path": p, "reason": r} for p, r in check.bad_images],
                "warnings": check.warnings,
            },
        )
    meta = {
        "classes": classes,
        "backbone": config.backbone,
        "architecture": built.spec.architecture,
        "weights": point.meta.get("weights") if point is not None else built.report.source,
        "preprocessing": pre,
        "strategy": config.strategy,
        "config": config.to_dict(),
    }
    data_id = {"train": len(train_source), "val": len(val_source), "fingerprint": check.fingerprints["train"]}
    tracker = Tracker(run, model, meta, config.patience, data_id, dist=dist)
    history: list[EpochResult] = []
    if point is not None:
        if point.state.get("data") != data_id:
            warn("the training data differ from the interrupted run's; the sample order cannot continue exactly")
        tracker.load_state(point.state["tracker"])
        if dist.is_main:
            run.truncate_metrics(int(point.state["epoch"]))
        dist.barrier()  # the others read the metrics below once rank 0 has cut them
        names = {f.name for f in fields(EpochResult)}
        history = [EpochResult(**{k: v for k, v in row.items() if k in names}) for row in run.metrics()]
        step = point.state["progress"]["step"]
        console.print(f"resuming from {point.stem.name}: epoch {point.state['epoch']}, step {step}")

    datasets: list[ImageDataset] = []

    def loader(source: ImageSource, train: bool) -> tuple[DataLoader, torch.Generator]:
        if config.decode_cache:
            source = decoded_source(source, pre, config.cache_dir)  # decode and resize once, not every epoch
        # Every loader gets its own generator: none may draw from the global RNG the model uses.
        generator = torch.Generator().manual_seed(config.seed)
        common = {"num_workers": config.workers, "generator": generator, "pin_memory": device.type == "cuda"}
        batches = _array_batches(source, pre, config, train)
        if batches is not None:  # whole batches from the uint8 array, augmented as tensors
            if not train:
                mine = list(dist.shard_dataset(range(len(source))))  # type: ignore[arg-type]
                chunks = [mine[i : i + config.batch_size] for i in range(0, len(mine), config.batch_size)]
                return DataLoader(batches, sampler=chunks, batch_size=None, **common), generator
            order = EpochBatchSampler(len(source), config.batch_size, shuffle=True, seed=config.seed, sample_seeds=True)
            return DataLoader(batches, sampler=dist.shard_batches(order), batch_size=None, **common), generator
        augmentation = config.augmentation or "resized-crop"
        transform = build_transforms(pre, train=train, augment=config.augment, augmentation=augmentation)
        dataset = ImageDataset(source, transform, skip_unreadable=True)
        datasets.append(dataset)
        if not train:
            return DataLoader(dist.shard_dataset(dataset), batch_size=config.batch_size, **common), generator
        sampler = EpochBatchSampler(len(source), config.batch_size, shuffle=True, seed=config.seed, sample_seeds=True)
        return DataLoader(SeededSamples(dataset), batch_sampler=dist.shard_batches(sampler), **common), generator

    head = head_keys(model)
    base_lr = config.resolved_lr()
    every = config.checkpoint_every_steps
    phases: list[_Phase] = []
    trained = {"plan": plan}

    if config.strategy in ("linear-probe", "lp-ft"):
        probe_epochs = config.epochs if config.strategy == "linear-probe" else config.resolved_lp_epochs()

        def probe() -> _Setup:
            if not config.feature_cache:
                (train_loader, gen), (val_loader, _) = loader(train_source, True), loader(val_source, False)
                groups = param_groups(
                    model,
                    head,
                    base_lr=base_lr * config.head_lr_mult,
                    head_lr_mult=1.0,
                    weight_decay=config.weight_decay,
                )
                return model, train_loader, val_loader, groups, {"train": gen}
            # The frozen backbone in eval mode is a fixed function: one pass gives every epoch's inputs.
            with dist.main_first():  # rank 0 fills the feature cache, the others read it
                feats, labels, vfeats, vlabels = probe_features(model, config, pre, train_source, val_source)
            gen = torch.Generator().manual_seed(config.seed)
            sampler = dist.shard_batches(
                EpochBatchSampler(len(labels), config.batch_size, shuffle=True, seed=config.seed)
            )
            train_loader = DataLoader(TensorDataset(feats, labels), batch_sampler=sampler, generator=gen)
            val_loader = DataLoader(TensorDataset(vfeats, vlabels), batch_size=256, generator=torch.Generator())
            head_module = model.get_classifier()
            groups = param_groups(
                head_module,
                [],
                base_lr=base_lr * config.head_lr_mult,
                head_lr_mult=1.0,
                weight_decay=config.weight_decay,
            )
            return head_module, train_loader, val_loader, groups, {"train": gen}

        # Feature-cache epochs take seconds; saving the whole model mid-epoch would cost more than it saves.
        phases.append(_Phase("probe", probe_epochs, 1, probe, 0 if config.feature_cache else every))
        if config.feature_cache and config.head_solver == "lbfgs":

            def solve(tracker: Tracker, index: int, start_epoch: int) -> list[EpochResult]:
                with dist.main_first():
                    data = probe_features(model, config, pre, train_source, val_source)
                return run_lbfgs_phase(
                    model,
                    data,
                    config,
                    tracker,
                    index=index,
                    name="probe",
                    epochs=probe_epochs,
                    first_epoch=1,
                    start_epoch=start_epoch,
                )

            phases[-1].solve = solve
        if config.strategy == "lp-ft":

            def finetune() -> _Setup:
                trained["plan"] = full = plan_freeze(model, "full", freeze_modules=config.freeze_modules)
                apply_freeze(model, full)
                console.print(f"fine-tune phase: trainable {full.trainable_params:,} parameters")
                # The probe has trained the head already: a 10x head rate here would pull the features towards
                # a head that is still moving (measured: 81.0% vs 79.8% on 2,000 Fashion-MNIST test images).
                groups = param_groups(model, head, base_lr=base_lr, head_lr_mult=1.0, weight_decay=config.weight_decay)
                (train_loader, gen), (val_loader, _) = loader(train_source, True), loader(val_source, False)
                return model, train_loader, val_loader, groups, {"train": gen}

            phases.append(_Phase("finetune", config.epochs - probe_epochs, probe_epochs + 1, finetune, every))
    else:

        def single() -> _Setup:
            lr = base_lr * (config.scratch_lr_mult if config.strategy == "scratch" else 1.0)
            mult = 1.0 if config.strategy == "scratch" else config.head_lr_mult
            groups = param_groups(model, head, base_lr=lr, head_lr_mult=mult, weight_decay=config.weight_decay)
            if config.strategy == "partial" and config.prefix_cache and not config.augment and not dist.enabled:
                # Unaugmented images through frozen (eval-mode) layers give the same activations every epoch.
                (plain_train, _), (val_loader, _) = loader(train_source, False), loader(val_source, False)
                cached = cache_prefix(
                    model, plain_train, val_loader, max_megabytes=config.prefix_cache_mb, device=device
                )
                if cached is not None:
                    trained["undo"] = cached.skip()
                    trained["prefix_cache"] = {
                        "boundary": cached.modules[-1][0],
                        "modules": [name for name, _ in cached.modules],
                        "megabytes": round(cached.megabytes, 1),
                    }
                    gen = torch.Generator().manual_seed(config.seed)
                    order = EpochBatchSampler(len(cached.train[1]), config.batch_size, shuffle=True, seed=config.seed)
                    train_loader = DataLoader(TensorDataset(*cached.train), batch_sampler=order, generator=gen)
                    val_loader = DataLoader(TensorDataset(*cached.val), batch_size=config.batch_size)
                    return model, train_loader, val_loader, groups, {"train": gen}
            (train_loader, gen), (val_loader, _) = loader(train_source, True), loader(val_source, False)
            return model, train_loader, val_loader, groups, {"train": gen}

        phases.append(_Phase(config.strategy, config.epochs, 1, single, every))

    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    # Pretrained running statistics are worth keeping; a random initialisation's (0 and 1) are not. Decided from
    # the config and registry, not from `built.weights`: a resumed run is built without loading pretrained weights.
    has_pretrained = config.strategy != "scratch" and (config.weights is not None or built.spec.weights is not None)
    keep_bn_stats = config.bn_stats == "frozen" and has_pretrained
    with catch_interrupts(tracker):
        budget = _Budget(start, config, run, resumed=point is not None)
        try:
            history += _run_phases(phases, config, loss_fn, device, tracker, point, dist, amp, keep_bn_stats, budget)
        finally:
            if "undo" in trained:
                trained["undo"]()  # the prefix-cached model takes images again

    seconds = time.perf_counter() - start
    plan = trained["plan"]
    result = RunResult(
        run.path,
        tracker.best_acc,
        tracker.best_epoch,
        history,
        seconds,
        plan.trainable_params,
        plan.frozen_params,
        tracker.stopped,
    )
    skipped = {p for p, _ in check.bad_images} | {p for d in datasets for p in d.unreadable}
    summary = {
        "best_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "seconds": seconds,
        "trainable_params": result.trainable_params,
        "frozen_params": result.frozen_params,
        "stopped_early": result.stopped_early,
        "device": str(device),
        "skipped_images": len(skipped),
        "skipped_steps": sum(r.skipped_steps for r in history),
    }
    if "prefix_cache" in trained:
        summary["prefix_cache"] = trained["prefix_cache"]
    if point is not None:
        summary["resumed_from"] = {"checkpoint": point.stem.name, **point.meta.get("resume", {})}
    if dist.is_main:
        run.write_json("summary.json", summary)
    console.print(f"best val acc {100 * tracker.best_acc:.2f}% at epoch {tracker.best_epoch}; run saved to {run.path}")
    return result


_Setup = tuple[nn.Module, DataLoader, DataLoader, list[dict], dict[str, torch.Generator]]


@dataclass
class _Phase:
    """A stretch of training with one optimiser: its epochs and how to build its model, loaders and groups."""

    name: str
    epochs: int
    first_epoch: int
    setup: Callable[[], _Setup]
    every_steps: int
    solve: Callable[[Tracker, int, int], list[EpochResult]] | None = None
    """Runs the whole phase instead of `setup` + `fit` (the L-BFGS head): (tracker, phase index, first epoch to log)."""

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epochs - 1


class _Budget:
    """`config.time_budget`: each trained phase gets the epochs that fit in what is left, planned from measured steps.

    The plan is saved in the run directory (budget.json) so that a resumed run keeps the same schedule.
    """

    def __init__(self, start: float, config: TrainConfig, run: RunDir, resumed: bool) -> None:
        self.path = run.path / "budget.json"
        self.seconds = parse_duration(config.time_budget) if config.time_budget else None
        self.deadline = start + self.seconds if self.seconds is not None and not resumed else None
        self.saved: dict = {}
        if resumed and self.path.is_file():
            self.saved = json.loads(self.path.read_text())
        self.active = self.deadline is not None

    def plan(self, phase: _Phase, cost: EpochCost, dist: DistContext) -> None:
        left = self.deadline - time.perf_counter()
        epochs = plan_epochs(cost, left, phase.epochs)
        # Under torchrun every process measures; all must train the same epochs: the fewest planned wins.
        votes = dist.sum([float(epochs) if rank == dist.rank else 0.0 for rank in range(dist.world_size)])
        epochs = int(votes.min())
        console.print(
            f"time budget {self.seconds / 60:.1f} min: {left / 60:.1f} min left, an epoch of {phase.name} measured "
            f"{cost.seconds:.0f} s ({cost.train_seconds:.0f} s training, {cost.val_seconds:.0f} s validation): "
            f"{epochs} of {phase.epochs} epochs planned"
        )
        self.saved[phase.name] = epochs
        if dist.is_main:
            self.path.write_text(json.dumps(self.saved, indent=2))

    def apply(self, phase: _Phase) -> None:
        if phase.name in self.saved:
            phase.epochs = int(self.saved[phase.name])


def _array_batches(source: ImageSource, pre: dict, config: TrainConfig, train: bool) -> ArrayBatches | None:
    """Batches straight from the uint8 array when the source has one at the right size and the augmentation is
    tensor-level (pad-crop, or none); None means the per-image PIL path."""
    size, side = int(pre["image_size"]), eval_resize(pre)
    if source.arrays is None or source.arrays.shape[1] != side or source.arrays.shape[2] != side:
        return None
    augment = train and config.augment
    if augment and config.augmentation != "pad-crop":
        return None
    return ArrayBatches(
        source,
        image_size=size,
        mean=pre["mean"],
        std=pre["std"],
        train=augment,
        padding=pad_crop_padding(size),
        erase=config.random_erase,
    )


def _load_weights(model: nn.Module, point: ResumePoint) -> None:
    try:
        model.load_state_dict(point.weights, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{point.stem}.safetensors does not fit backbone {point.meta.get('backbone')!r} with "
            f"{len(point.meta['classes'])} classes: {str(exc)[:300]}"
        ) from None


def _run_phases(
    phases: list[_Phase],
    config: TrainConfig,
    loss_fn: nn.Module,
    device: torch.device,
    tracker: Tracker,
    point: ResumePoint | None,
    dist: DistContext,
    amp: MixedPrecision,
    keep_bn_stats: bool,
    budget: _Budget,
) -> list[EpochResult]:
    """Run each phase in turn; after a resume, skip what was done and continue the interrupted phase exactly."""
    state = point.state if point is not None else None
    history: list[EpochResult] = []
    for index, phase in enumerate(phases):
        if tracker.stopped:
            break
        if state is not None and (state["phase_index"] > index or state["epoch"] > phase.last_epoch):
            continue  # finished before the interruption
        mid_phase = state is not None and state["phase_index"] == index
        if index > 0 and not mid_phase:
            tracker.reset_patience()
        if phase.solve is not None:
            if state is not None:
                restore_rng(state["rng"], {})
            history += phase.solve(tracker, index, int(state["epoch"]) if mid_phase else phase.first_epoch)
            state = None
            continue
        module, train_loader, val_loader, groups, generators = phase.setup()
        optimizer = build_optimizer(groups, config)
        if budget.active and not mid_phase:
            with fast_depthwise(module, config.fast_depthwise and device.type == "cpu"):
                cost = measure_epoch(module, train_loader, val_loader, optimizer, loss_fn, device, amp, keep_bn_stats)
            budget.plan(phase, cost, dist)
        budget.apply(phase)
        tracker.deadline = budget.deadline
        tracker.final_epoch = phases[-1].last_epoch
        scheduler = build_scheduler(
            optimizer,
            total_steps=phase.epochs * len(train_loader),
            warmup_steps=int(config.warmup_epochs * len(train_loader)),
        )
        first, start = phase.first_epoch, None
        if mid_phase:
            try:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(
                    f"cannot resume phase {phase.name!r}: the saved optimiser state does not fit the trainable "
                    f"parameters (was the strategy or the set of frozen layers changed?): {exc}"
                ) from None
            first, start = int(state["epoch"]), EpochProgress(**state["progress"])
        if state is not None:
            restore_rng(state["rng"], generators)
            state = None
        tracker.phase = PhaseContext(index, phase.name, optimizer, scheduler, generators, phase.every_steps)
        # Only what trains is wrapped: a cached-feature probe wraps the head, never the frozen backbone.
        trainer = dist.wrap(module, device)
        if config.compile:
            trainer = torch.compile(trainer)
        with fast_depthwise(module, config.fast_depthwise and device.type == "cpu"):
            history += fit(
                trainer,
                train_loader,
                val_loader,
                epochs=phase.last_epoch - first + 1,
                optimizer=optimizer,
                scheduler=scheduler,
                loss_fn=loss_fn,
                device=device,
                phase=phase.name,
                first_epoch=first,
                on_epoch=tracker,
                start=start,
                on_step=tracker.on_step,
                max_bad_steps=config.max_bad_steps,
                dist=dist,
                amp=amp,
                keep_bn_stats=keep_bn_stats,
            )
        del trainer  # its gradient hooks must not outlive the phase (lp-ft wraps the head again in the next)
    return history
