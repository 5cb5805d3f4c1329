"""Evaluate a run once and keep what the report shows: metrics, confusion matrix, per-image predictions and
thumbnails of the most confident mistakes (so the report never needs the data again)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from transferkit.data import ImageSource
from transferkit.evaluate import ClassificationMetrics, classification_metrics, load_run, run_logits

__all__ = ["evaluate_and_save", "read_examples"]

_THUMB_PX = 128


def evaluate_and_save(
    run_dir: str | Path, source: ImageSource, out_dir: str | Path, device: torch.device, limit: int = 24
) -> ClassificationMetrics:
    """Evaluate the best checkpoint of `run_dir` on `source` and write the figures into `out_dir`.

    Writes ``metrics.json`` and ``confusion.png`` (as ``transferkit evaluate`` does), ``predictions.csv``
    (index, true, predicted, confidence of every image) and up to `limit` misclassified images, most
    confident first, as PNG thumbnails in ``misclassified/`` listed in ``misclassified.json``.
    """
    from transferkit.report.plots import plot_confusion

    run = load_run(run_dir)
    if list(source.classes) != run.classes:
        raise ValueError(f"{source.name}: classes {source.classes} differ from the run's classes {run.classes}")
    logits, labels = run_logits(run, source, device=device, what=Path(out_dir).name)
    probs = logits.softmax(1)
    confidence, predicted = probs.max(1)
    metrics = classification_metrics(labels.numpy(), predicted.numpy(), run.classes)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"source": source.name, **metrics.to_dict()}, indent=2))
    title = f"{Path(run_dir).name} on {source.name}: {100 * metrics.accuracy:.2f}% of {metrics.n}"
    plot_confusion(metrics.confusion, run.classes, out / "confusion.png", title)
    with open(out / "predictions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "true", "predicted", "confidence"])
        for i, (t, p, c) in enumerate(zip(labels.tolist(), predicted.tolist(), confidence.tolist(), strict=True)):
            writer.writerow([i, run.classes[t], run.classes[p], f"{c:.4f}"])

    wrong = (predicted != labels).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][:limit].tolist()
    thumbs = out / "misclassified"
    thumbs.mkdir(exist_ok=True)
    examples = []
    for i in wrong:
        image = source.load(i)
        image.thumbnail((_THUMB_PX, _THUMB_PX))
        file = f"misclassified/{i:06d}.png"
        image.save(out / file)
        examples.append(
            {
                "index": i,
                "path": str(source.paths[i]) if source.paths is not None else None,
                "true": run.classes[int(labels[i])],
                "predicted": run.classes[int(predicted[i])],
                "confidence": float(confidence[i]),
                "file": file,
            }
        )
    (out / "misclassified.json").write_text(json.dumps({"source": source.name, "examples": examples}, indent=2))
    return metrics


def read_examples(eval_dir: Path) -> tuple[str, list[dict]]:
    """The source name and misclassified examples saved by `evaluate_and_save` (empty when none were)."""
    path = eval_dir / "misclassified.json"
    if not path.is_file():
        return "", []
    data = json.loads(path.read_text())
    return data.get("source", ""), [e for e in data.get("examples", []) if (eval_dir / e["file"]).is_file()]
