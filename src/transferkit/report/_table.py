"""The comparison table: the same rows for the console (rich) and the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from transferkit.comparison import CompareResult

__all__ = ["summary_table", "table_rows"]


def summary_table(result: CompareResult) -> Table:
    """The comparison as a rich Table (figures as `table_rows` formats them)."""
    from rich.table import Table

    headers, rows, caption = table_rows(result)
    # Named as `transferkit runs` and the folder listing name it; the full path is in the line that began it.
    table = Table(title=f"{result.info.get('backbone', '')}: {Path(result.compare_dir).name}", caption=caption)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        failed = row[-1] == "failed"
        table.add_row(*row[:-1], style="red" if failed else ("bold" if row[0] == result.best_strategy else None))
    return table


def table_rows(result: CompareResult) -> tuple[list[str], list[list[str]], str]:
    """Headers, formatted rows (with the status as a last, unshown cell) and a caption explaining the columns."""
    cv = result.cv
    has_test = any(s.test_acc_mean is not None for s in result.summaries)
    acc = "val acc (mean ± std)" if cv else "best val acc"
    headers = ["strategy", "trainable params", acc]
    if has_test:
        headers.append("test acc (mean ± std)" if cv else "test acc")
    balanced = any(r.eval_balanced_acc is not None for r in result.runs)
    split = next((r.eval_split for r in result.runs if r.eval_split), "eval")
    if balanced:  # beside accuracy, what imbalance cannot hide: every class counted alike
        headers += [f"{split} balanced acc", f"{split} macro F1"]
    headers += ["wall time" + (" (all folds)" if cv else ""), "time to target"]
    rows = []
    for s in result.summaries:
        if s.status == "failed":
            rows.append([s.strategy, "failed", *["—"] * (len(headers) - 2), "failed"])
            continue
        name = f"{s.strategy} ({s.model})" if s.model else s.strategy
        row = [name, f"{s.trainable_params:,}", _pct(s.val_acc_mean, s.val_acc_std)]
        if has_test:
            row.append(_pct(s.test_acc_mean, s.test_acc_std))
        if balanced:
            row += _class_figures(result, s.strategy)
        row += [f"{s.wall_seconds:.1f} s", "—" if s.seconds_to_target is None else f"{s.seconds_to_target:.1f} s"]
        rows.append([*row, s.status])
    targets = ", ".join(f"{100 * v:.2f}%" for v in result.targets.values()) or "—"
    caption = (
        f"time to target: summed epoch seconds until the validation accuracy first reached the best of the "
        f"weakest strategy ({targets}{' per fold' if cv else ''}); a dash means it never got there. "
        + (f"Mean ± std over {cv} folds. " if cv else "")
        + "Wall time includes evaluation and figures."
    )
    return headers, rows, caption


def _class_figures(result: CompareResult, strategy: str) -> list[str]:
    """Balanced accuracy and macro F1 of a strategy's evaluated runs (mean over folds)."""
    runs = [r for r in result.runs if r.strategy == strategy and r.status == "ok" and r.eval_balanced_acc is not None]
    if not runs:
        return ["—", "—"]
    balanced = sum(r.eval_balanced_acc for r in runs) / len(runs)
    f1 = sum(r.eval_macro_f1 for r in runs if r.eval_macro_f1 is not None) / len(runs)
    return [f"{100 * balanced:.2f}%", f"{f1:.3f}"]


def _pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.2f}%" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}%"
