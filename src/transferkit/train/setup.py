"""The named setup steps of a training run: processes and device, data, model, tracker.

Each step takes what the previous ones produced and returns a typed value; `train_run` calls them in order and
then runs the strategy's phases. The model-file probe (`export.cut`) uses the same steps where they apply.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import ImageSource, Preprocessing
from transferkit.data.check import CheckReport, content_hash_sets, preflight
from transferkit.data.transforms import auto_image_size
from transferkit.models import BackboneSpec, BuiltModel, FreezePlan, apply_freeze, build_model, preprocessing_config
from transferkit.strategies import Phase, Strategy
from transferkit.train._kernel_choices import KernelChoices
from transferkit.train._mix import BatchMix
from transferkit.train._resume import ResumePoint, config_changes, kept_changes, read_resume_point, warn
from transferkit.train._tracker import Tracker
from transferkit.train.checkpoint import CheckpointError
from transferkit.train.distributed import DistContext, init_distributed
from transferkit.train.imbalance import balanced_class_weights
from transferkit.train.loop import EpochResult, StepSettings
from transferkit.train.memory import check_memory, estimate_memory
from transferkit.train.precision import MixedPrecision
from transferkit.train.rundir import RunDir

__all__ = [
    "RunData",
    "RunModel",
    "Session",
    "check_fits",
    "open_session",
    "prepare_data",
    "resolve_device",
    "seed_everything",
    "setup_model",
    "setup_tracker",
    "step_settings",
    "write_run_files",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; asking for CUDA without one is an error."""
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


@dataclass
class Session:
    """This process's place in the run: its processes, run directory, device, and the state it resumes from."""

    run: RunDir
    dist: DistContext
    device: torch.device
    amp: MixedPrecision
    point: ResumePoint | None
    start: float = field(default_factory=time.perf_counter)
    kernels: KernelChoices = field(default_factory=lambda: KernelChoices(None))
    """Which depthwise-gradient kernel each shape uses (`train._depthwise`): recorded in every training state."""

    @property
    def resumed(self) -> bool:
        return self.point is not None


def open_session(config: TrainConfig, run_dir: str | Path, resume: bool | str | Path, start: float) -> Session:
    """Join the other processes (torchrun), open the run directory, read the resume point, pick the device."""
    # Under torchrun every process runs the whole run; only rank 0 writes files (and prints).
    dist = init_distributed(config.device)
    dist.check_batch_size(config.batch_size)
    # One process owns a run folder (torchrun's ranks share it: rank 0 holds the lock for them all).
    run = RunDir(run_dir, lock=dist.is_main)
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
            warn("resuming with settings that differ from the interrupted run's (they apply): " + "; ".join(changes))
        kept = kept_changes(point.meta["config"], config.to_dict())
        if kept:  # said as what runs: the checkpoint holds the weights and the preprocessing
            warn(
                "a resumed run keeps the interrupted run's backbone, weights and preprocessing: "
                + "; ".join(kept)
                + " (to change them, start a new run)"
            )
    seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = dist.device(resolve_device(config.device))
    amp = MixedPrecision(config.precision, device, channels_last=config.channels_last)
    if config.precision != "fp32" and not amp.enabled:
        warn(f"precision {config.precision} applies on CUDA only; training in fp32 on {device}")
    from transferkit.data.feature_cache import cache_root

    # The run's record first: a resume computes with the kernels the interrupted run used.
    recorded = point.state.get("depthwise") if point is not None else None
    kernels = KernelChoices.for_machine(cache_root(config.cache_dir), recorded)
    return Session(run, dist, device, amp, point, start, kernels)


@dataclass
class RunData:
    """The training and validation data after the preflight checks."""

    train: ImageSource
    val: ImageSource
    check: CheckReport

    @property
    def classes(self) -> list[str]:
        return list(self.train.classes)

    @property
    def identity(self) -> dict:
        """What a resumed run compares to tell whether it trains on the same data."""
        return {
            "train": len(self.train),
            "val": len(self.val),
            "fingerprint": self.check.fingerprints["train"],
            "val_fingerprint": self.check.fingerprints["val"],
        }


def prepare_data(config: TrainConfig, session: Session, train: ImageSource, val: ImageSource | None) -> RunData:
    """Split off validation when none is given, check the classes, drop unreadable images (with a warning each)."""
    train, val, check = preflight(
        train, val, max_bad_fraction=config.max_bad_fraction, val_fraction=config.val_fraction, seed=config.seed
    )
    for path, reason in check.bad_images:
        warn(f"skipping {path}: {reason}")
    for message in check.warnings:
        warn(message)
    point = session.point
    if point is not None and list(point.meta["classes"]) != list(train.classes):
        raise CheckpointError(
            f"cannot resume {session.run.path}: its classes {point.meta['classes']} differ from the data's classes "
            f"{list(train.classes)}"
        )
    data = RunData(train, val, check)
    if point is not None:
        _check_same_data(config, session, point.state.get("data") or {}, data.identity)
    return data


def _check_same_data(config: TrainConfig, session: Session, old: dict, new: dict) -> None:
    """Refuse to resume on other images (unless allowed): `best` would compare epochs on two validation sets."""
    changed = [
        name
        for name, keys in (("training", ("train", "fingerprint")), ("validation", ("val", "val_fingerprint")))
        if any(key in old and old[key] != new[key] for key in keys)  # states from older versions lack some keys
    ]
    if not changed:
        return
    what = " and ".join(changed)
    counts = f"{old.get('train')} training / {old.get('val')} validation images then, {new['train']} / {new['val']} now"
    if not config.allow_data_change:
        raise CheckpointError(
            f"cannot resume {session.run.path}: its {what} images differ from the interrupted run's (same classes; "
            f"{counts}); its best checkpoint would mix two validation sets and the sample order cannot continue. "
            "Start a new run, or resume anyway with --allow-data-change"
        )
    warn(
        f"the {what} images differ from the interrupted run's ({counts}; --allow-data-change): the sample order "
        "cannot continue exactly, and the best epoch so far was picked on the old validation set"
    )


@dataclass
class RunModel:
    """The model with its new head, where its weights came from, and the preprocessing it expects."""

    model: nn.Module
    built: BuiltModel | None
    """None for a model that is not a registered backbone (a head over a cut model file's features)."""
    preprocessing: Preprocessing


def setup_model(config: TrainConfig, strategy: Strategy, session: Session, data: RunData) -> RunModel:
    """Build the backbone with a new head, load pretrained (or resumed) weights, decide the preprocessing."""
    point = session.point
    built = build_model(
        config.backbone,
        len(data.classes),
        # Resuming overwrites every weight from the checkpoint, so the pretrained source is not read again.
        pretrained=strategy.pretrained and point is None,
        weights_file=config.weights if point is None else None,
        head_init=config.head_init,
        allow_partial_weights=config.allow_partial_weights,
        allow_unsafe_pickle=config.allow_unsafe_pickle,
    )
    model = built.model
    # BatchNorm that keeps its statistics computes none from the batch: there is nothing to synchronise.
    if config.sync_bn and not keeps_bn_stats(config, strategy, built.spec):
        model = session.dist.sync_batchnorm(model, session.device)
    model = model.to(session.device)
    if session.amp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if point is None:
        console.print(built.report.summary())
        pre = preprocessing_config(model, built.spec, config.image_size, config.crop_pct)
        if config.image_size is None and built.spec.default_size is None:
            pre = pre.with_size(auto_image_size(data.train.describe()["image_sizes"], pre.image_size))
    else:
        _load_weights(model, point)
        pre = Preprocessing.from_dict(point.meta["preprocessing"])
    return RunModel(model, built, pre)


def check_fits(config: TrainConfig, session: Session, run_model: RunModel, phases: list[Phase]) -> None:
    """Refuse a run whose training steps cannot fit in memory, before the images are decoded or a step is taken."""
    size = run_model.preprocessing.image_size
    trains_backbone = any(not phase.probe or not config.feature_cache for phase in phases)
    batch = max(1, config.batch_size // session.dist.world_size)  # each process holds its share of the batch
    estimate = estimate_memory(run_model.model, size, batch, trains_backbone=trains_backbone)
    if estimate is not None:
        check_memory(estimate, session.device, size)


def keeps_bn_stats(config: TrainConfig, strategy: Strategy, spec: BackboneSpec) -> bool:
    """Whether every BatchNorm normalises with its pretrained running statistics for the whole run.

    Pretrained statistics are worth keeping; a random initialisation's (0 and 1) are not. Decided from the config
    and registry, not from the loaded weights: a resumed run is built without loading pretrained weights.
    """
    has_pretrained = strategy.pretrained and (config.weights is not None or spec.weights is not None)
    return config.bn_stats == "frozen" and has_pretrained


def step_settings(
    config: TrainConfig, strategy: Strategy, session: Session, run_model: RunModel, data: RunData | None = None
) -> StepSettings:
    """How every step trains: the loss, the processes, precision, and whether BatchNorm keeps its statistics.

    With ``class_weights: balanced`` the loss weighs each class by its share of `data`'s training images.
    """
    return StepSettings(
        device=session.device,
        loss_fn=nn.CrossEntropyLoss(
            weight=_class_weights(config, data, session.device), label_smoothing=config.label_smoothing
        ),
        dist=session.dist,
        amp=session.amp,
        keep_bn_stats=keeps_bn_stats(config, strategy, run_model.built.spec),
        max_bad_steps=config.max_bad_steps,
        mix=_batch_mix(config, data),
    )


def write_run_files(
    config: TrainConfig, session: Session, data: RunData, run_model: RunModel, first: Phase
) -> tuple[dict, FreezePlan]:
    """Freeze for the first phase, say what trains, write the run's description files.

    Returns:
        The metadata every checkpoint carries, and the first phase's freezing plan.
    """
    plan = first.freeze.plan(run_model.model)
    apply_freeze(run_model.model, plan)
    pre, run = run_model.preprocessing, session.run
    console.print(
        f"strategy {config.strategy}: {plan.description}; trainable {plan.trainable_params:,} / "
        f"frozen {plan.frozen_params:,} parameters; image size {pre.image_size} px on {session.device}"
        + (f", torch threads: {torch.get_num_threads()}" if session.device.type == "cpu" else "")
    )
    if session.dist.is_main:
        config.to_yaml(run.path / "config.yaml")
        if not session.resumed:
            run.write_json("classes.json", data.classes)
            run.write_json("load_report.json", run_model.built.report.to_dict())
            run.write_json("preprocessing.json", pre.to_dict())
        skipped = [{"path": p, "reason": r} for p, r in data.check.bad_images]
        described = {"train": data.train.describe(), "val": data.val.describe(), "freeze_plan": plan.description}
        run.write_json("data.json", {**described, "skipped_images": skipped, "warnings": data.check.warnings})
        # Lets evaluate recognise test images that are training or validation images (the figures would be inflated).
        run.write_json("content_hashes.json", content_hash_sets(data.check))
    point = session.point
    meta = {
        "classes": data.classes,
        "backbone": config.backbone,
        "architecture": run_model.built.spec.architecture,
        "weights": point.meta.get("weights") if point is not None else run_model.built.report.source,
        "preprocessing": pre.to_dict(),
        "strategy": config.strategy,
        "config": config.to_dict(),
    }
    return meta, plan


def setup_tracker(
    config: TrainConfig, session: Session, data: RunData, model: nn.Module, meta: dict
) -> tuple[Tracker, list[EpochResult]]:
    """The tracker (metrics, best and last checkpoints, early stopping) and, after a resume, the epochs so far."""
    tracker = Tracker(
        session.run,
        model,
        meta,
        config.patience,
        data.identity,
        dist=session.dist,
        kernels=session.kernels,
        select_by=config.select_by,
    )
    point = session.point
    if point is None:
        return tracker, []
    tracker.load_state(point.state["tracker"])
    if session.dist.is_main:
        session.run.truncate_metrics(int(point.state["epoch"]))
    session.dist.barrier()  # the others read the metrics below once rank 0 has cut them
    history = [EpochResult.from_row(row) for row in session.run.metrics()]
    console.print(
        f"resuming from {point.stem.name}: epoch {point.state['epoch']}, step {point.state['progress']['step']}"
    )
    return tracker, history


def _batch_mix(config: TrainConfig, data: RunData | None) -> BatchMix | None:
    if not (config.mixup > 0 or config.cutmix > 0) or data is None:
        return None
    return BatchMix(len(data.classes), config.mixup, config.cutmix, config.seed)


def _class_weights(config: TrainConfig, data: RunData | None, device: torch.device) -> torch.Tensor | None:
    if config.class_weights == "none":
        return None
    if data is None:
        raise ValueError("class_weights balanced needs the training data to count the classes")
    return balanced_class_weights(data.train.labels, len(data.classes)).to(device)


def _load_weights(model: nn.Module, point: ResumePoint) -> None:
    try:
        model.load_state_dict(point.weights, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{point.stem}.safetensors does not fit backbone {point.meta.get('backbone')!r} with "
            f"{len(point.meta['classes'])} classes: {str(exc)[:300]}"
        ) from None
