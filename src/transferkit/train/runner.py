"""One training run, from sources to a run directory with checkpoints and metrics."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import ImageDataset, ImageSource, stratified_split
from transferkit.data.transforms import auto_image_size, build_transforms
from transferkit.models import (
    apply_freeze,
    build_model,
    head_keys,
    plan_freeze,
    preprocessing_config,
)
from transferkit.train.checkpoint import save_checkpoint
from transferkit.train.features import extract_features
from transferkit.train.loop import EpochResult, fit
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
) -> RunResult:
    """Fine-tune `config.backbone` on `train_source` and write everything to `run_dir`.

    When `val_source` is None a stratified `config.val_fraction` of the training data is held out.
    """
    start = time.perf_counter()
    run = RunDir(run_dir)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if val_source is None:
        train_idx, val_idx = stratified_split(train_source.labels, config.val_fraction, config.seed)
        train_source, val_source = train_source.subset(train_idx), train_source.subset(val_idx)
    elif list(val_source.classes) != list(train_source.classes):
        raise ValueError(f"validation classes {val_source.classes} differ from training classes {train_source.classes}")
    classes = list(train_source.classes)

    built = build_model(
        config.backbone,
        len(classes),
        pretrained=config.strategy != "scratch",
        weights_file=config.weights,
        head_init=config.head_init,
        allow_partial_weights=config.allow_partial_weights,
        allow_unsafe_pickle=config.allow_unsafe_pickle,
    )
    model = built.model.to(device)
    console.print(built.report.summary())
    pre = preprocessing_config(model, built.spec, config.image_size)
    if config.image_size is None and built.spec.default_size is None:
        pre["image_size"] = auto_image_size(train_source.describe()["image_sizes"], pre["image_size"])
    plan = plan_freeze(model, config.strategy, freeze_stages=config.freeze, freeze_modules=config.freeze_modules)
    apply_freeze(model, plan)
    console.print(
        f"strategy {config.strategy}: {plan.description}; trainable {plan.trainable_params:,} / "
        f"frozen {plan.frozen_params:,} parameters; image size {pre['image_size']} px on {device}"
    )

    config.to_yaml(run.path / "config.yaml")
    run.write_json("classes.json", classes)
    run.write_json("load_report.json", built.report.to_dict())
    run.write_json("preprocessing.json", pre)
    run.write_json(
        "data.json",
        {"train": train_source.describe(), "val": val_source.describe(), "freeze_plan": plan.description},
    )
    meta = {
        "classes": classes,
        "backbone": config.backbone,
        "architecture": built.spec.architecture,
        "weights": built.report.source,
        "preprocessing": pre,
        "strategy": config.strategy,
        "config": config.to_dict(),
    }
    tracker = _Tracker(run, model, meta, config.patience)

    def loader(source: ImageSource, train: bool) -> DataLoader:
        transform = build_transforms(pre, train=train, augment=config.augment)
        generator = torch.Generator().manual_seed(config.seed)
        return DataLoader(
            ImageDataset(source, transform),
            batch_size=config.batch_size,
            shuffle=train,
            num_workers=config.workers,
            generator=generator,
            pin_memory=device.type == "cuda",
        )

    head = head_keys(model)
    smoothing = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    base_lr = config.resolved_lr()
    history: list[EpochResult] = []

    if config.strategy in ("linear-probe", "lp-ft"):
        probe_epochs = config.epochs if config.strategy == "linear-probe" else config.resolved_lp_epochs()
        # Augmentation would need a backbone pass per epoch; the probe trains on fixed features instead.
        use_features = config.feature_cache
        if use_features:
            # The frozen backbone in eval mode is a fixed function: one pass gives every epoch's inputs.
            train_eval = DataLoader(
                ImageDataset(train_source, build_transforms(pre, train=False)), batch_size=config.batch_size
            )
            feats, labels = extract_features(model, train_eval, device, "features (train)")
            vfeats, vlabels = extract_features(model, loader(val_source, False), device, "features (val)")
            generator = torch.Generator().manual_seed(config.seed)
            probe_train = DataLoader(
                TensorDataset(feats, labels), batch_size=config.batch_size, shuffle=True, generator=generator
            )
            probe_val = DataLoader(TensorDataset(vfeats, vlabels), batch_size=256)
            probe_model: nn.Module = model.get_classifier()
        else:
            probe_train, probe_val, probe_model = loader(train_source, True), loader(val_source, False), model
        groups = param_groups(
            probe_model if use_features else model,
            [] if use_features else head,
            base_lr=base_lr * config.head_lr_mult,
            head_lr_mult=1.0,
            weight_decay=config.weight_decay,
        )
        history += _run_phase(
            probe_model, probe_train, probe_val, groups, config, smoothing, device, probe_epochs, "probe", 1, tracker
        )
        if config.strategy == "lp-ft" and not tracker.stopped:
            plan = plan_freeze(model, "full", freeze_modules=config.freeze_modules)
            apply_freeze(model, plan)
            console.print(f"fine-tune phase: trainable {plan.trainable_params:,} parameters")
            groups = param_groups(
                model, head, base_lr=base_lr, head_lr_mult=config.head_lr_mult, weight_decay=config.weight_decay
            )
            tracker.reset_patience()
            history += _run_phase(
                model,
                loader(train_source, True),
                loader(val_source, False),
                groups,
                config,
                smoothing,
                device,
                config.epochs - probe_epochs,
                "finetune",
                probe_epochs + 1,
                tracker,
            )
    else:
        lr = base_lr * (config.scratch_lr_mult if config.strategy == "scratch" else 1.0)
        mult = 1.0 if config.strategy == "scratch" else config.head_lr_mult
        groups = param_groups(model, head, base_lr=lr, head_lr_mult=mult, weight_decay=config.weight_decay)
        history += _run_phase(
            model,
            loader(train_source, True),
            loader(val_source, False),
            groups,
            config,
            smoothing,
            device,
            config.epochs,
            config.strategy,
            1,
            tracker,
        )

    seconds = time.perf_counter() - start
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
    run.write_json(
        "summary.json",
        {
            "best_val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "seconds": seconds,
            "trainable_params": result.trainable_params,
            "frozen_params": result.frozen_params,
            "stopped_early": result.stopped_early,
            "device": str(device),
        },
    )
    console.print(f"best val acc {100 * tracker.best_acc:.2f}% at epoch {tracker.best_epoch}; run saved to {run.path}")
    return result


def _run_phase(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    groups: list[dict],
    config: TrainConfig,
    loss_fn: nn.Module,
    device: torch.device,
    epochs: int,
    phase: str,
    first_epoch: int,
    tracker: _Tracker,
) -> list[EpochResult]:
    optimizer = build_optimizer(groups, config)
    steps = epochs * len(train_loader)
    scheduler = build_scheduler(
        optimizer, total_steps=steps, warmup_steps=int(config.warmup_epochs * len(train_loader))
    )
    return fit(
        model,
        train_loader,
        val_loader,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        device=device,
        phase=phase,
        first_epoch=first_epoch,
        on_epoch=tracker,
    )


class _Tracker:
    """Logs each epoch, keeps the best and last checkpoints, and decides early stopping."""

    def __init__(self, run: RunDir, model: nn.Module, meta: dict, patience: int | None) -> None:
        self.run, self.model, self.meta, self.patience = run, model, meta, patience
        self.best_acc, self.best_epoch, self.bad_epochs, self.stopped = -1.0, 0, 0, False

    def reset_patience(self) -> None:
        self.bad_epochs = 0

    def __call__(self, result: EpochResult) -> bool:
        self.run.append_metrics(result.to_dict())
        improved = result.val_acc > self.best_acc
        console.print(
            f"epoch {result.epoch:3d} \\[{result.phase}] train loss {result.train_loss:.4f} acc "
            f"{100 * result.train_acc:5.2f}% | val loss {result.val_loss:.4f} acc {100 * result.val_acc:5.2f}%"
            f" | {result.seconds:.1f}s" + (" *" if improved else "")
        )
        meta = {**self.meta, "epoch": result.epoch, "metrics": result.to_dict()}
        save_checkpoint(self.run.last, self.model, meta)
        if improved:
            self.best_acc, self.best_epoch, self.bad_epochs = result.val_acc, result.epoch, 0
            save_checkpoint(self.run.best, self.model, meta)
        else:
            self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience:
            console.print(f"early stopping: no better validation accuracy in {self.patience} epochs")
            self.stopped = True
        return self.stopped
