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

from transferkit._console import console
from transferkit.config import TrainConfig
from transferkit.data import ImageSource, Preprocessing
from transferkit.engines import Sidecar, convert_onnx_to_mnn, engine_logits, iter_batches, load_engine
from transferkit.engines.onnx_files import OUTPUT_NAME, import_onnx, read_onnx_metadata, write_onnx_metadata
from transferkit.engines.runtimes import MnnRuntime, OnnxRuntime
from transferkit.export._graph import append_linear_head, cut_graph, graph_inputs, load_model, resolve_cut
from transferkit.export.errors import ExportError
from transferkit.export.parity import FP32_TOLERANCE, compare_logits
from transferkit.models.surgery import init_head
from transferkit.strategies import Phase, get_strategy
from transferkit.train.checkpoint import load_checkpoint
from transferkit.train.distributed import DistContext
from transferkit.train.imbalance import balanced_class_weights
from transferkit.train.loop import EpochResult, StepSettings
from transferkit.train.precision import MixedPrecision
from transferkit.train.rundir import RunDir, new_run_dir
from transferkit.train.runner import run_phases
from transferkit.train.setup import RunData, RunModel, Session, prepare_data, seed_everything, setup_tracker

__all__ = ["CutRunResult", "train_from_model_file"]

# Used only when the file carries no transferkit metadata: the ImageNet statistics most backbones expect.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
    phases = _head_only_phases(config)
    model_file = Path(model_file)
    onnx_model = load_model(model_file)
    feature = resolve_cut(onnx_model, cut_at, str(model_file))
    cut = cut_graph(onnx_model, feature)
    pre = _preprocessing(onnx_model, model_file, config)

    # The same setup steps, phases and tracker as every run; only the features come from the cut graph.
    seed_everything(config.seed)
    run = RunDir(run_dir if run_dir else new_run_dir(out, name or f"{model_file.stem}-cut"), lock=True)
    session = Session(run, DistContext(), torch.device("cpu"), MixedPrecision(), None, start)
    data = prepare_data(config, session, train, val)
    feats, labels, vfeats, vlabels = _cut_features(cut, feature, config, data, pre)
    classes = data.classes
    console.print(
        f"cut {model_file.name} at {feature}: {feats.shape[1]} features; linear head for {len(classes)} classes"
    )
    _write_run_files(config, data, run, pre, model_file, feature)

    head = _FeatureHead(feats.shape[1], len(classes), config.head_init)
    meta = {"classes": classes, "backbone": f"{model_file.name}@{feature}", "preprocessing": pre.to_dict()}
    meta["config"] = config.to_dict()
    tracker, _ = setup_tracker(config, session, data, head, meta)
    weight = balanced_class_weights(data.train.labels, len(classes)) if config.class_weights == "balanced" else None
    settings = StepSettings(
        torch.device("cpu"), nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    )
    run_model = RunModel(head, None, pre)
    history = run_phases(
        config, session, data, run_model, settings, tracker, phases, features=lambda: (feats, labels, vfeats, vlabels)
    ).history
    load_checkpoint(run.best, head)

    model_path = _export_head(run, cut, feature, head.classifier, {**meta, "vfeats": vfeats}, data.val, check_images)
    test_acc = _test(model_path, test, config.batch_size)
    seconds = time.perf_counter() - start
    summary = {"best_val_acc": tracker.best_acc, "best_epoch": tracker.best_epoch, "test_acc": test_acc}
    run.write_json(
        "summary.json",
        {**summary, "seconds": seconds, "feature_dim": int(feats.shape[1]), "model_file": str(model_path)},
    )
    console.print(
        f"best val acc {100 * tracker.best_acc:.2f}% at epoch {tracker.best_epoch}; model written to {model_path}"
    )
    return CutRunResult(
        run.path, model_path, feature, int(feats.shape[1]), tracker.best_acc, tracker.best_epoch, test_acc, seconds,
        history,
    )  # fmt: skip


def _cut_features(
    cut, feature: str, config: TrainConfig, data: RunData, pre: Preprocessing
) -> tuple[torch.Tensor, ...]:
    """The cut graph run once over the training and validation images: the probe's features and labels."""
    with tempfile.TemporaryDirectory(prefix="transferkit-cut-") as tmp:
        extractor = _extractor(cut, feature, config.engine, Path(tmp))
        feats, labels = _features(extractor, data.train, pre, config.batch_size, "train")
        vfeats, vlabels = _features(extractor, data.val, pre, config.batch_size, "val")
    return feats, labels, vfeats, vlabels


def _export_head(run: RunDir, cut, feature: str, head: nn.Linear, meta: dict, val: ImageSource, limit: int) -> Path:
    """Write cut graph + head as one ONNX file, and check it against the head on the extracted features."""
    pre = Preprocessing.from_dict(meta["preprocessing"])
    sidecar = Sidecar(pre, tuple(meta["classes"]), meta["backbone"], _io_names(cut))
    model_path = _write_model(run.path / "export", cut, feature, head, sidecar)
    _check_parity(model_path, head, meta["vfeats"], val, limit, run.path / "export")
    return model_path


def _test(model_path: Path, test: ImageSource | None, batch_size: int) -> float | None:
    if test is None:
        return None
    logits = engine_logits(load_engine(model_path), test, batch_size)
    test_acc = float((logits.argmax(1) == test.labels).mean())
    console.print(f"test accuracy {100 * test_acc:.2f}% on {len(test)} images")
    return test_acc


def _head_only_phases(config: TrainConfig) -> list[Phase]:
    if config.strategy != "auto":
        phases = get_strategy(config.strategy).phases(config)
        if all(p.probe for p in phases):
            return phases
    raise ExportError(f"a model file backbone supports strategies that only train the head, not {config.strategy!r}")


class _FeatureHead(nn.Module):
    """The new head alone, over features a cut model file computes: the model the runner trains and checkpoints."""

    def __init__(self, features: int, classes: int, init: str) -> None:
        super().__init__()
        self.classifier = nn.Linear(features, classes)
        init_head(self.classifier, init)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


def _write_run_files(
    config: TrainConfig, data: RunData, run: RunDir, pre: Preprocessing, model_file: Path, feature: str
) -> None:
    config.to_yaml(run.path / "config.yaml")
    run.write_json("classes.json", data.classes)
    run.write_json("preprocessing.json", pre.to_dict())
    described = {"train": data.train.describe(), "val": data.val.describe(), "backbone_file": str(model_file)}
    skipped = [{"path": p, "reason": r} for p, r in data.check.bad_images]
    run.write_json("data.json", {**described, "cut_at": feature, "skipped_images": skipped})


def _preprocessing(model, model_file: Path, config: TrainConfig) -> Preprocessing:
    """The file's own preprocessing when transferkit wrote it; otherwise its input size and ImageNet statistics."""
    meta = read_onnx_metadata(model_file)
    dims = graph_inputs(model)[0].type.tensor_type.shape.dim
    fixed = dims[-1].dim_value if len(dims) == 4 and dims[-1].dim_value else None
    if fixed and config.image_size and config.image_size != fixed:
        raise ExportError(f"{model_file} takes {fixed} px inputs; --image-size {config.image_size} cannot apply")
    if all(k in meta for k in ("image_size", "mean", "std")):
        return Preprocessing.from_dict({**meta, "crop_pct": meta.get("crop_pct", config.crop_pct)})
    size = fixed or config.image_size or 224
    console.print(
        f"{model_file.name} carries no preprocessing metadata: using {size} px and ImageNet mean/std "
        f"(crop_pct {config.crop_pct})"
    )
    return Preprocessing(int(size), _IMAGENET_MEAN, _IMAGENET_STD, "bilinear", config.crop_pct)


def _extractor(cut, feature: str, engine: str, tmp: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The cut graph as a function of image batches: MNN with ``--engine mnn``, otherwise onnxruntime.

    A model file cannot run in torch, so ``torch`` and ``auto`` mean onnxruntime here.
    """
    if engine == "mnn":
        onnx_path = tmp / "cut.onnx"
        import_onnx().save(cut, str(onnx_path))
        mnn_path = convert_onnx_to_mnn(onnx_path, tmp / "cut.mnn")
        return MnnRuntime(mnn_path, io_names=(graph_inputs(cut)[0].name, feature))
    return OnnxRuntime(cut.SerializeToString())


def _features(
    extract: Callable[[np.ndarray], np.ndarray], source: ImageSource, pre: Preprocessing, batch_size: int, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    chunks = [extract(batch).reshape(len(batch), -1) for batch in iter_batches(source, pre, batch_size)]
    console.print(f"features ({what}): {len(source)} images")
    return torch.from_numpy(np.concatenate(chunks)).float(), torch.from_numpy(source.labels.copy())


def _io_names(cut) -> tuple[str, str]:
    return graph_inputs(cut)[0].name, OUTPUT_NAME


def _write_model(out: Path, cut, feature: str, head: nn.Linear, sidecar: Sidecar) -> Path:
    onnx = import_onnx()
    weight = head.weight.detach().cpu().numpy()
    bias = head.bias.detach().cpu().numpy()
    model = append_linear_head(cut, feature, weight, bias)
    write_onnx_metadata(model, sidecar.to_dict())
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    onnx.save(model, str(path))
    (out / "preprocessing.json").write_text(json.dumps(sidecar.to_dict(), indent=2))
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
