"""Linear-probe training on a model file cut at a named node: the cut graph is the frozen backbone.

The ONNX graph is cut at the node's output, run with onnxruntime (or MNN) once over the images to get
features, a linear head trains on those features with the same loop as every other run, and the
result is written back as one ONNX file (cut graph + Gemm head) with its preprocessing.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import ImageSource
from transferkit.data.check import preflight
from transferkit.export._graph import append_linear_head, cut_graph, graph_inputs, load_model, resolve_cut
from transferkit.export.engines import engine_logits, iter_batches, load_engine, run_session
from transferkit.export.errors import ExportError
from transferkit.export.onnx import _import_onnx, read_onnx_metadata, write_onnx_metadata
from transferkit.export.parity import FP32_TOLERANCE, compare_logits
from transferkit.models.surgery import init_head
from transferkit.strategies import get_strategy
from transferkit.train._order import EpochBatchSampler
from transferkit.train._probe import lbfgs_epochs
from transferkit.train.linear_head import LbfgsHead
from transferkit.train.loop import EpochResult, StepSettings, fit
from transferkit.train.optim import build_optimizer, build_scheduler, param_groups
from transferkit.train.rundir import RunDir, new_run_dir
from transferkit.train.setup import seed_everything

__all__ = ["CutRunResult", "train_from_model_file"]

# Used only when the file carries no transferkit metadata: the ImageNet statistics most backbones expect.
_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}


@dataclass
class CutRunResult:
    """What a linear probe on a cut model file produced."""

    run_dir: Path
    model_path: Path
    cut_at: str
    feature_dim: int
    best_val_acc: float
    best_epoch: int
    test_acc: float | None = None
    seconds: float = 0.0
    history: list[EpochResult] = field(default_factory=list)


def train_from_model_file(
    model_file: str | Path,
    cut_at: str | None,
    train: ImageSource,
    val: ImageSource | None = None,
    *,
    config: TrainConfig | None = None,
    test: ImageSource | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    run_dir: str | Path | None = None,
    check_images: int = 256,
) -> CutRunResult:
    """Cut an ONNX file at `cut_at`, train a linear head on its features, and export one ONNX file.

    Writes a run directory with ``config.yaml``, ``classes.json``, ``data.json``, ``metrics.jsonl``,
    ``summary.json`` and ``export/model.onnx`` + ``export/preprocessing.json`` + ``export/parity.json``.

    Args:
        model_file: An ONNX classifier or feature extractor (e.g. one `transferkit export` wrote).
        cut_at: A node name, or a tensor name, whose output is the feature to train on.
        train: Training images.
        val: Validation images; default a stratified `config.val_fraction` of `train`.
        config: Training settings (strategy must be ``linear-probe``); `engine` ``mnn`` runs the cut graph in
            MNN, anything else in onnxruntime.
        test: Evaluated once with the final file.
        out: Parent folder of the new run directory (unless `run_dir` is given).
        name: Run name; default ``<model file stem>-cut``.
        run_dir: Write into this folder instead of a new one under `out`.
        check_images: Validation images for the parity check of the written file.

    Raises:
        ExportError: A strategy other than linear-probe, or `cut_at` missing or unknown (the message
            lists candidate nodes), or a written file outside the fp32 parity tolerance.
    """
    start = time.perf_counter()
    config = (config or TrainConfig()).with_recipe(len(train))
    if config.strategy == "auto" or not all(p.probe for p in get_strategy(config.strategy).phases(config)):
        raise ExportError(
            f"a model file backbone supports strategies that only train the head, not {config.strategy!r}"
        )
    model_file = Path(model_file)
    model = load_model(model_file)
    feature = resolve_cut(model, cut_at, str(model_file))
    cut = cut_graph(model, feature)
    pre = _preprocessing(model, model_file, config)

    seed_everything(config.seed)
    train, val, check = preflight(
        train, val, max_bad_fraction=config.max_bad_fraction, val_fraction=config.val_fraction, seed=config.seed
    )
    for path, reason in check.bad_images:
        console.print(f"[yellow]warning:[/yellow] skipping {path}: {reason}", highlight=False)
    classes = list(train.classes)
    run = RunDir(run_dir if run_dir else new_run_dir(out, name or f"{model_file.stem}-cut"))
    config.to_yaml(run.path / "config.yaml")
    run.write_json("classes.json", classes)
    run.write_json("preprocessing.json", pre)
    run.write_json(
        "data.json",
        {
            "train": train.describe(),
            "val": val.describe(),
            "backbone_file": str(model_file),
            "cut_at": feature,
            "skipped_images": [{"path": p, "reason": r} for p, r in check.bad_images],
        },
    )

    with tempfile.TemporaryDirectory(prefix="transferkit-cut-") as tmp:
        extractor = _extractor(cut, feature, config.engine, Path(tmp))
        feats, labels = _features(extractor, train, pre, config.batch_size, "train")
        vfeats, vlabels = _features(extractor, val, pre, config.batch_size, "val")
    console.print(
        f"cut {model_file.name} at {feature}: {feats.shape[1]} features; linear head for {len(classes)} classes"
    )

    head = nn.Linear(feats.shape[1], len(classes))
    init_head(head, config.head_init)
    best = _BestHead(run, head, config.patience)
    # The head is fitted exactly as a native linear probe fits it on cached features, so the two compare like
    # for like: the same solver, the same settings.
    fit_head = _fit_lbfgs if config.head_solver == "lbfgs" else _fit_minibatch
    history = fit_head(head, (feats, labels, vfeats, vlabels), config, best)
    head.load_state_dict(best.state)

    sidecar = {**pre, "classes": classes, "backbone": f"{model_file.name}@{feature}", "io_names": _io_names(cut)}
    model_path = _write_model(run.path / "export", cut, feature, head, sidecar)
    _check_parity(model_path, head, vfeats, val, check_images, run.path / "export")

    test_acc = None
    if test is not None:
        logits = engine_logits(load_engine(model_path), test, config.batch_size)
        test_acc = float((logits.argmax(1) == test.labels).mean())
        console.print(f"test accuracy {100 * test_acc:.2f}% on {len(test)} images")
    seconds = time.perf_counter() - start
    run.write_json(
        "summary.json",
        {
            "best_val_acc": best.best_acc,
            "best_epoch": best.best_epoch,
            "test_acc": test_acc,
            "seconds": seconds,
            "feature_dim": int(feats.shape[1]),
            "model_file": str(model_path),
        },
    )
    console.print(f"best val acc {100 * best.best_acc:.2f}% at epoch {best.best_epoch}; model written to {model_path}")
    return CutRunResult(
        run.path, model_path, feature, int(feats.shape[1]), best.best_acc, best.best_epoch, test_acc, seconds, history
    )


def _fit_minibatch(
    head: nn.Linear, data: tuple[torch.Tensor, ...], config: TrainConfig, best: _BestHead
) -> list[EpochResult]:
    """The optimiser over mini-batches, with the native probe's seeded batch order and learning-rate schedule."""
    feats, labels, vfeats, vlabels = data
    sampler = EpochBatchSampler(len(labels), config.batch_size, shuffle=True, seed=config.seed)
    train_loader = DataLoader(TensorDataset(feats, labels), batch_sampler=sampler)
    val_loader = DataLoader(TensorDataset(vfeats, vlabels), batch_size=256)
    groups = param_groups(
        head, [], base_lr=config.resolved_lr() * config.head_lr_mult, head_lr_mult=1.0, weight_decay=config.weight_decay
    )
    optimizer = build_optimizer(groups, config)
    scheduler = build_scheduler(
        optimizer,
        total_steps=config.epochs * len(train_loader),
        warmup_steps=int(config.warmup_epochs * len(train_loader)),
    )
    settings = StepSettings(torch.device("cpu"), nn.CrossEntropyLoss(label_smoothing=config.label_smoothing))
    return fit(
        head,
        train_loader,
        val_loader,
        settings,
        epochs=config.epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        phase="probe",
        on_epoch=best,
    )


def _fit_lbfgs(
    head: nn.Linear, data: tuple[torch.Tensor, ...], config: TrainConfig, best: _BestHead
) -> list[EpochResult]:
    """Full-batch L-BFGS on standardised features, its iterations spread over the epochs as the native probe does."""
    feats, labels, _, _ = data
    solver = LbfgsHead(feats, labels, head.out_features, l2=config.head_l2, label_smoothing=config.label_smoothing)
    results = []
    for result in lbfgs_epochs(solver, data, config.epochs):
        solver.fold_into(head)
        results.append(result)
        if best(result):
            break
    return results


class _BestHead:
    """Logs each epoch to the run directory, keeps the best head's weights, decides early stopping."""

    def __init__(self, run: RunDir, head: nn.Module, patience: int | None) -> None:
        self.run, self.head, self.patience = run, head, patience
        self.best_acc, self.best_epoch, self.bad_epochs = -1.0, 0, 0
        self.state = {k: v.clone() for k, v in head.state_dict().items()}

    def __call__(self, result: EpochResult) -> bool:
        self.run.append_metrics(result.to_dict())
        improved = result.val_acc > self.best_acc
        console.print(
            f"epoch {result.epoch:3d} train loss {result.train_loss:.4f} acc {100 * result.train_acc:5.2f}% | "
            f"val loss {result.val_loss:.4f} acc {100 * result.val_acc:5.2f}%" + (" *" if improved else "")
        )
        if improved:
            self.best_acc, self.best_epoch, self.bad_epochs = result.val_acc, result.epoch, 0
            self.state = {k: v.detach().clone() for k, v in self.head.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience


def _preprocessing(model, model_file: Path, config: TrainConfig) -> dict:
    """The file's own preprocessing when transferkit wrote it; otherwise its input size and ImageNet statistics."""
    meta = read_onnx_metadata(model_file)
    dims = graph_inputs(model)[0].type.tensor_type.shape.dim
    fixed = dims[-1].dim_value if len(dims) == 4 and dims[-1].dim_value else None
    if fixed and config.image_size and config.image_size != fixed:
        raise ExportError(f"{model_file} takes {fixed} px inputs; --image-size {config.image_size} cannot apply")
    if all(k in meta for k in ("image_size", "mean", "std")):
        keys = ("image_size", "mean", "std", "interpolation", "crop_pct")
        return {k: meta[k] for k in keys if k in meta} | {"crop_pct": float(meta.get("crop_pct", config.crop_pct))}
    size = fixed or config.image_size or 224
    console.print(
        f"{model_file.name} carries no preprocessing metadata: using {size} px and ImageNet mean/std "
        f"(crop_pct {config.crop_pct})"
    )
    return {"image_size": int(size), **_IMAGENET, "crop_pct": float(config.crop_pct)}


def _extractor(cut, feature: str, engine: str, tmp: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The cut graph as a function of image batches: MNN with ``--engine mnn``, otherwise onnxruntime.

    A model file cannot run in torch, so ``torch`` and ``auto`` mean onnxruntime here.
    """
    if engine == "mnn":
        from transferkit.export.engines import _MnnEngine
        from transferkit.export.mnn import convert_onnx_to_mnn

        onnx_path = tmp / "cut.onnx"
        _import_onnx().save(cut, str(onnx_path))
        mnn_path = convert_onnx_to_mnn(onnx_path, tmp / "cut.mnn")
        return _MnnEngine(mnn_path, {"io_names": [graph_inputs(cut)[0].name, feature]}, None)
    from transferkit.export.engines import _import

    ort = _import("onnxruntime", "onnxruntime")
    session = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda batch: run_session(session, batch)


def _features(
    extract: Callable[[np.ndarray], np.ndarray], source: ImageSource, pre: dict, batch_size: int, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    chunks = [extract(batch).reshape(len(batch), -1) for batch in iter_batches(source, pre, batch_size)]
    console.print(f"features ({what}): {len(source)} images")
    return torch.from_numpy(np.concatenate(chunks)).float(), torch.from_numpy(source.labels.copy())


def _io_names(cut) -> list[str]:
    from transferkit.export.onnx import OUTPUT_NAME

    return [graph_inputs(cut)[0].name, OUTPUT_NAME]


def _write_model(out: Path, cut, feature: str, head: nn.Linear, sidecar: dict) -> Path:
    onnx = _import_onnx()
    weight = head.weight.detach().cpu().numpy()
    bias = head.bias.detach().cpu().numpy()
    model = append_linear_head(cut, feature, weight, bias)
    write_onnx_metadata(model, sidecar)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    onnx.save(model, str(path))
    (out / "preprocessing.json").write_text(json.dumps(sidecar, indent=2))
    return path


def _check_parity(
    model_path: Path, head: nn.Linear, vfeats: torch.Tensor, val: ImageSource, limit: int, out: Path
) -> None:
    """The written file, run on images, must give the logits the head gives on the extracted features."""
    n = min(len(val), limit)
    engine = load_engine(model_path)
    exported = engine_logits(engine, val.subset(np.arange(n)))
    with torch.inference_mode():
        reference = head(vfeats[:n]).numpy()
    figures = compare_logits(reference, exported, FP32_TOLERANCE)
    (out / "parity.json").write_text(json.dumps({"file": str(model_path), "n_images": n, **figures}, indent=2))
    console.print(
        f"parity of {model_path.name}: top-1 agreement {100 * figures['top1_agreement']:.2f}% on {n} images, "
        f"max |logit diff| {figures['max_abs_diff']:.2e}"
    )
    if not figures["passed"]:
        raise ExportError(f"{model_path}: the written model disagrees with the trained head; see {out / 'parity.json'}")
