"""Figures: training curves, confusion matrices, the learning-rate range test (matplotlib imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_confusion", "plot_curves", "plot_lr_find", "plot_run_lr_find"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(histories: Mapping[str, Sequence[dict]], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy against epoch: solid lines for validation, dashed for training, a colour per run."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 5))
    for i, (name, rows) in enumerate(histories.items()):
        if not rows:
            continue
        color = f"C{i}"
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "--", color=color, alpha=0.7, label=f"{name} train")
        ax_loss.plot(epochs, [r["val_loss"] for r in rows], "-", color=color, label=f"{name} val")
        ax_acc.plot(epochs, [100 * r["train_acc"] for r in rows], "--", color=color, alpha=0.7, label=f"{name} train")
        ax_acc.plot(epochs, [100 * r["val_acc"] for r in rows], "-o", ms=3, color=color, label=f"{name} val")
    from matplotlib.ticker import MaxNLocator

    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # One legend below both panels, a column per run: inside a panel it hides the curves it explains.
    handles, labels = ax_acc.get_legend_handles_labels()
    if handles:
        # Legends fill column by column: each run's column shows validation above training.
        order = sorted(range(len(labels)), key=lambda i: (i // 2, not labels[i].endswith(" val")))
        fig.legend(
            [handles[i] for i in order],
            [labels[i] for i in order],
            loc="lower center",
            ncol=max(1, len(order) // 2),
            fontsize=9,
            frameon=False,
        )
    if title:
        fig.suptitle(title)
    rows_of_legend = 2 if handles else 0
    fig.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix with counts in the cells."""
    import numpy as np

    plt = _pyplot()
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if cm[i, j]:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lr_find(found: Mapping, path: str | Path) -> Path:
    """Loss against ``--lr`` (log scale) of a range test (`LrFindResult.to_dict()`), the suggestion marked on it."""
    plt = _pyplot()
    lrs, losses, smoothed = found["lrs"], found["losses"], found["smoothed"]
    index = lrs.index(found["suggestion"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(lrs, losses, color="C0", alpha=0.3, lw=1, label="loss of each batch")
    ax.plot(lrs, smoothed, color="C0", lw=2, label="smoothed")
    ax.plot(
        [lrs[index]], [smoothed[index]], "o", color="C3", ms=8,
        label=f"suggested --lr {lrs[index]:.2e} ({found['rule']})",
    )  # fmt: skip
    heads = {k: v for k, v in found.get("group_multipliers", {}).items() if k.startswith("head")}
    mult = f"; the head at x{next(iter(heads.values())):g}" if heads else ""
    ax.set(xscale="log", xlabel=f"--lr (pretrained layers{mult})", ylabel="training loss")
    ax.set_title(f"learning-rate range test ({found.get('phase', '')}): {found.get('stopped', '')}", fontsize=10)
    # Single batches spike far above the smoothed curve near divergence; the curve is what the rule reads.
    ax.set_ylim(bottom=0.9 * min(smoothed), top=min(max(losses), 1.25 * max(smoothed)))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run_lr_find(run_dir: str | Path) -> Path | None:
    """Draw ``lr_find.png`` of a run trained with ``--lr auto`` from its ``lr_find.json`` (None: the run has none)."""
    import json

    source = Path(run_dir) / "lr_find.json"
    if not source.is_file():
        return None
    return plot_lr_find(json.loads(source.read_text()), source.with_suffix(".png"))
