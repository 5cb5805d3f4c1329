"""evaluate and predict: the library functions behind the CLI commands of the same names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from transferkit.data import IMAGE_EXTENSIONS, DataError, ImageSource, open_rgb
from transferkit.evaluate._tta import average_probabilities, run_tta
from transferkit.evaluate.inference import LoadedRun, load_run, run_logits
from transferkit.evaluate.metrics import ClassificationMetrics, classification_metrics
from transferkit.train.checkpoint import CheckpointError

__all__ = ["evaluate_run", "predict_images"]


def evaluate_run(
    run_dir: str | Path,
    source: ImageSource,
    *,
    which: str = "best",
    out_dir: str | Path | None = None,
    split: str = "evaluation",
    tta: str | None = None,
) -> tuple[ClassificationMetrics, Path]:
    """Evaluate a run's checkpoint on a labelled source; writes metrics JSON and a confusion-matrix PNG.

    `source` may hold only some of the run's classes (a test folder with fewer class folders): its labels
    are matched to the run's classes by name, and the per-class figures of the absent ones have no support.

    Unreadable images are named and skipped (metrics.json lists them); images the run trained or validated on
    (by content, from its ``content_hashes.json``) are warned about.

    Args:
        split: What `source` is to the user, for the warnings ("test" after training).
        tta: none or flip (`TrainConfig.tta`); default the run's own setting. A baseline run has none.

    Returns:
        The metrics and the folder the files were written to (``<run>/eval-<source name>`` by default).
    """
    from transferkit.baselines.run import is_baseline_run
    from transferkit.report.plots import plot_confusion

    if is_baseline_run(run_dir):  # a classical model: refitted and scored by the baselines package
        from transferkit.baselines import baseline_metrics

        metrics, classes, screened = baseline_metrics(run_dir, source), list(source.classes), {}
        run_path = Path(run_dir)
    else:
        run = load_run(run_dir, which)
        source = _in_run_classes(run, source)
        source, screened = _screened(run, source, split)
        logits, labels = run_logits(run, source, tta=tta)
        metrics = classification_metrics(labels.numpy(), logits.argmax(1).numpy(), run.classes)
        classes, run_path = run.classes, run.run_dir
    out = Path(out_dir) if out_dir else run_path / "eval"
    out.mkdir(parents=True, exist_ok=True)
    record = {"source": source.name, **metrics.to_dict(), **screened}
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    plot_confusion(metrics.confusion, classes, out / "confusion.png", f"{source.name}: {100 * metrics.accuracy:.2f}%")
    return metrics, out


def predict_images(
    run_dir: str | Path | LoadedRun, paths: list[str | Path], *, top_k: int = 3, which: str = "best"
) -> list[dict]:
    """Top-k classes and probabilities for each image file, in the order given; a folder stands for its images.

    `run_dir` may also be an exported model file (``.onnx``, ``.mnn``, ``.pt``): it then runs in its own
    engine with the preprocessing saved beside it. `which` is the run's checkpoint: ``best`` or ``last``.

    An image that cannot be used (missing, not an image, truncated) gets ``{"path": ..., "error": ...}``
    in place of ``top``; one bad file among many costs only its own entry.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    from transferkit.data.check import image_problem

    paths = _image_files(paths)
    problems = {i: problem for i, path in enumerate(paths) if (problem := image_problem(path))}
    readable = [path for i, path in enumerate(paths) if i not in problems]
    predicted = iter(_predict_readable(run_dir, readable, top_k, which))  # also for none: a bad run is an error
    return [
        {"path": str(path), "error": f"{path}: {problems[i]}"} if i in problems else next(predicted)
        for i, path in enumerate(paths)
    ]


def _predict_readable(run_dir: str | Path | LoadedRun, paths: list[str | Path], top_k: int, which: str) -> list[dict]:
    if not isinstance(run_dir, LoadedRun) and Path(run_dir).suffix.lower() in (".onnx", ".mnn", ".pt", ".pts"):
        from transferkit.engines import predict_files

        return predict_files(run_dir, paths, top_k=top_k)
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir, which)
    transform = run.preprocessing.eval_transform()
    k = max(1, min(top_k, len(run.classes)))
    results = []
    with torch.inference_mode():
        for path in paths:
            x = transform(open_rgb(path)).unsqueeze(0)
            logits = run.model(x)
            if run_tta(run.meta) == "flip":  # the evaluation transform is mirror-symmetric
                logits = average_probabilities(logits, run.model(x.flip(-1)))
            if not torch.isfinite(logits).all():  # softmax would turn them into "nan%" without a word
                raise CheckpointError(
                    f"{run.run_dir}: the model's output for {path} is not finite (NaN or infinite), so its weights "
                    "are broken (saved from a diverged run?); train again, e.g. with a lower --lr"
                )
            probs = logits.softmax(1)[0]
            values, indices = probs.topk(k)
            results.append(
                {
                    "path": str(path),
                    "top": [
                        {"class": run.classes[i], "index": int(i), "probability": float(v)}
                        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
                    ],
                }
            )
    return results


def _screened(run: LoadedRun, source: ImageSource, split: str) -> tuple[ImageSource, dict]:
    """`source` without unreadable images (each named, as training skips them), warning about images the run trained
    or validated on; returns what metrics.json records of it."""
    from transferkit.data.check import screen

    hashes = run.run_dir / "content_hashes.json"
    known = json.loads(hashes.read_text()) if hashes.is_file() else None  # runs of older versions have none
    known = {{"train": "training", "val": "validation"}.get(k, k): v for k, v in (known or {}).items()}
    clean, report = screen(source, split, known)
    for path, reason in report.bad_images:
        _warn(f"skipping {path}: {reason}")
    for message in report.warnings:
        _warn(message)
    if len(clean) == 0:
        raise DataError(f"{source.name}: none of its {len(source)} images can be read")
    if report.bad_images:
        _warn(
            f"{len(report.bad_images)} of {len(source)} images could not be read; the figures cover the other "
            f"{len(clean)}"
        )
    skipped = [{"path": p, "reason": r} for p, r in report.bad_images]
    return clean, {"skipped_images": skipped, "warnings": report.warnings}


def _warn(message: str) -> None:
    from rich.markup import escape

    from transferkit._console import console

    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def _in_run_classes(run: LoadedRun, source: ImageSource) -> ImageSource:
    """`source` labelled by the run's class indices; its classes must be some or all of the run's."""
    if list(source.classes) == run.classes:
        return source
    unknown = [c for c in source.classes if c not in run.classes]
    if unknown:
        raise ValueError(
            f"the evaluation data has classes the run was not trained on: {', '.join(unknown)} "
            f"(the run's classes: {', '.join(run.classes)}); evaluate on class folders or a class list of the run's"
        )
    index = np.array([run.classes.index(c) for c in source.classes], dtype=np.int64)
    return ImageSource(
        classes=list(run.classes),
        labels=index[source.labels],
        paths=source.paths,
        arrays=source.arrays,
        name=source.name,
    )


def _image_files(paths: list[str | Path]) -> list[str | Path]:
    """`paths` with each folder replaced by the image files under it, sorted (hidden files and folders skipped)."""
    expanded: list[str | Path] = []
    for path in paths:
        if not Path(path).is_dir():
            expanded.append(path)
            continue
        found = []
        for folder, subfolders, files in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            found += [
                Path(folder) / f
                for f in sorted(files)
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
            ]
        if not found:
            raise DataError(f"{path}: no image files in this folder ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        expanded += found
    return expanded
