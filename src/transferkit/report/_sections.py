"""The sections of the HTML report, each a function from a `CompareResult` to an HTML fragment.

Every string that comes from the user's files (class names, paths, config values, error messages) goes
through `html.escape`; images are embedded as base64 data URIs so the report is one self-contained file.
"""

from __future__ import annotations

import base64
import json
import re
from html import escape
from pathlib import Path

import yaml

from transferkit.comparison import CompareResult, StrategyRun
from transferkit.report._examples import read_examples
from transferkit.report._load import eval_dir
from transferkit.report._table import table_rows
from transferkit.train.rundir import RunDir

__all__ = [
    "best_run",
    "config_section",
    "confusion_section",
    "curves_section",
    "data_section",
    "examples_section",
    "img",
    "load_section",
    "lr_find_section",
    "summary_section",
]


def img(path: Path, alt: str, css: str = "") -> str:
    """An <img> with the PNG embedded as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    style = f' class="{css}"' if css else ""
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}"{style}>'


def best_run(result: CompareResult) -> StrategyRun | None:
    """The best strategy's run with the highest evaluation accuracy (its best fold under --cv)."""
    runs = [r for r in result.runs if r.strategy == result.best_strategy and r.status == "ok"]
    return max(runs, key=lambda r: r.eval_acc if r.eval_acc is not None else -1.0, default=None)


def summary_section(result: CompareResult) -> str:
    headers, rows, caption = table_rows(result)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cls = "failed" if row[-1] == "failed" else ("best" if row[0] == result.best_strategy else "")
        cells = "".join(f"<td>{escape(c)}</td>" for c in row[:-1])
        body.append(f'<tr class="{cls}">{cells}</tr>')
    errors = "".join(
        f"<li><b>{escape(r.strategy)}</b>{escape(f' fold {r.fold}' if r.fold else '')}: "
        f"<code>{escape(r.error or '')}</code> (traceback in {escape(r.run_dir)}/error.txt)</li>"
        for r in result.runs
        if r.status != "ok"
    )
    best = f"<p>Best (on validation): <b>{escape(result.best_strategy)}</b>.</p>" if result.best_strategy else ""
    gain = result.transfer_gain_text()
    best += f'<p class="gain"><b>{escape(gain)}</b></p>' if gain else ""
    folds = _fold_table(result) if result.cv else ""
    failed = f'<p class="failed">Failed runs:</p><ul>{errors}</ul>' if errors else ""
    return (
        f'<h2 id="summary">Summary</h2><table class="summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table><p class='caption'>{escape(caption)}</p>{best}{failed}{folds}"
    )


def _fold_table(result: CompareResult) -> str:
    """Per-fold validation (and test) accuracy, under --cv."""
    folds = sorted({r.fold for r in result.runs if r.fold})
    head = "".join(f"<th>fold {k}</th>" for k in folds)
    rows = []
    for strategy in result.info.get("strategies", []):
        cells = []
        for k in folds:
            run = next((r for r in result.runs if r.strategy == strategy and r.fold == k), None)
            if run is None or run.status != "ok":
                cells.append("<td>failed</td>")
                continue
            test = f" / test {100 * run.test_acc:.2f}%" if run.test_acc is not None else ""
            cells.append(f"<td>{100 * run.best_val_acc:.2f}%{escape(test)}</td>")
        rows.append(f"<tr><td>{escape(strategy)}</td>{''.join(cells)}</tr>")
    return (
        f"<h3>Per fold (best validation accuracy)</h3><table><thead><tr><th>strategy</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def curves_section(result: CompareResult) -> str:
    parts = []
    for name in result.info.get("curves", []):
        path = result.compare_dir / name
        if not path.is_file():
            _redraw_curves(result, name)
        if path.is_file():
            figure = img(path, f"training curves {name}", "wide")
            parts.append(f"<figure>{figure}<figcaption>{escape(_curves_caption(name))}</figcaption></figure>")
    note = "<p class='caption'>Solid: validation; dashed: training. One colour per strategy.</p>"
    return '<h2 id="curves">Training curves</h2>' + (note + "".join(parts) if parts else "<p>No curves recorded.</p>")


def _curves_caption(name: str) -> str:
    """What a curves figure shows, from its file name (``curves.png``, ``curves-fold-2.png``)."""
    fold = re.fullmatch(r"curves-fold-(\d+)\.png", name)
    what = "Loss and accuracy per epoch of every strategy"
    return f"{what}, fold {fold.group(1)}" if fold else what


def _redraw_curves(result: CompareResult, name: str) -> None:
    """Draw a missing curves PNG from the metrics.jsonl files it shows (needs matplotlib)."""
    from transferkit.report.plots import plot_curves

    fold = int(name.removeprefix("curves-fold-").removesuffix(".png")) if name.startswith("curves-fold-") else None
    histories = {
        r.strategy: RunDir(result.compare_dir / r.run_dir).metrics()
        for r in result.runs
        if r.status == "ok" and r.fold == fold
    }
    histories = {k: v for k, v in histories.items() if v}
    if histories:
        plot_curves(histories, result.compare_dir / name)


def lr_find_section(result: CompareResult) -> str:
    """The learning-rate range test of every run trained with ``--lr auto`` (nothing when none was)."""
    parts = []
    for run in result.runs:
        folder = result.compare_dir / run.run_dir
        if run.status != "ok" or not (folder / "lr_find.json").is_file():
            continue
        found = json.loads((folder / "lr_find.json").read_text())
        png = folder / "lr_find.png"
        if not png.is_file():
            from transferkit.report.plots import plot_lr_find

            plot_lr_find(found, png)
        fold = f", fold {run.fold}" if run.fold else ""
        caption = (
            f"{run.strategy}{fold}: training loss against --lr over {len(found['lrs'])} steps "
            f"({found.get('stopped', '')}); trained at the suggested {found['suggestion']:.2e} ({found['rule']} rule)"
        )
        parts.append(
            f"<figure>{img(png, f'lr-find {run.strategy}')}<figcaption>{escape(caption)}</figcaption></figure>"
        )
    if not parts:
        return ""
    return '<h2 id="lr-find">Learning-rate range test</h2>' + "".join(parts)


def confusion_section(result: CompareResult) -> str:
    run = best_run(result)
    where = eval_dir(result.compare_dir / run.run_dir, run.eval_split) if run else None
    if where is None:
        return '<h2 id="confusion">Confusion matrix</h2><p>No evaluation saved.</p>'
    metrics = json.loads((where / "metrics.json").read_text())
    png = where / "confusion.png"
    if not png.is_file():
        from transferkit.report.plots import plot_confusion

        plot_confusion(metrics["confusion"], metrics["classes"], png)
    fold = f", fold {run.fold}" if run.fold else ""
    title = (
        f"{run.strategy}{fold} on {where.name} ({metrics.get('source', '')}): "
        f"accuracy {100 * metrics['accuracy']:.2f}% of {metrics['n']} images, balanced accuracy "
        f"{100 * _balanced_accuracy(metrics):.2f}%, macro F1 {metrics['macro_f1']:.3f}"
    )
    rows = "".join(
        f"<tr><td>{escape(c)}</td><td>{p:.3f}</td><td>{r:.3f}</td><td>{f:.3f}</td><td>{s}</td></tr>"
        for c, p, r, f, s in zip(
            metrics["classes"], metrics["precision"], metrics["recall"], metrics["f1"], metrics["support"], strict=True
        )
    )
    per_class = (
        "<table class='per-class'><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
        f"<th>support</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return (
        f'<h2 id="confusion">Confusion matrix of the best strategy</h2><p>{escape(title)}</p>'
        f'<div class="side">{img(png, "confusion matrix", "confusion")}{per_class}</div>'
    )


def _balanced_accuracy(metrics: dict) -> float:
    """From metrics.json (files written before it was saved: the mean recall of the classes with images)."""
    if metrics.get("balanced_accuracy") is not None:
        return float(metrics["balanced_accuracy"])
    present = [r for r, n in zip(metrics["recall"], metrics["support"], strict=True) if n]
    return sum(present) / len(present) if present else float("nan")


def examples_section(result: CompareResult) -> str:
    run = best_run(result)
    where = eval_dir(result.compare_dir / run.run_dir, run.eval_split) if run else None
    source, examples = read_examples(where) if where else ("", [])
    header = '<h2 id="examples">Misclassified images</h2>'
    if not examples:
        note = "none" if where and (where / "misclassified.json").is_file() else "not saved for this run"
        return f"{header}<p>Misclassified examples: {note}.</p>"
    cells = []
    for e in examples:
        label = (
            f"<span class='true'>true: {escape(e['true'])}</span><br>"
            f"<span class='pred'>predicted: {escape(e['predicted'])}</span><br>"
            f"confidence {100 * e['confidence']:.1f}%"
        )
        title = str(e.get("path") or f"{source} #{e['index']}")
        thumb = img(where / e["file"], title)
        cells.append(f'<figure class="thumb" title="{escape(title)}">{thumb}<figcaption>{label}</figcaption></figure>')
    fold = f", fold {run.fold}" if run.fold else ""
    intro = (
        f"The {len(examples)} most confident mistakes of {escape(run.strategy)}{escape(fold)} on the "
        f"{escape(where.name)} set ({escape(source)})."
    )
    return f'{header}<p>{intro}</p><div class="grid">{"".join(cells)}</div>'


def load_section(result: CompareResult) -> str:
    rows, details = [], []
    seen: set[str] = set()
    for run in result.runs:
        if run.strategy in seen:
            continue
        path = result.compare_dir / run.run_dir / "load_report.json"
        if not path.is_file():
            continue
        seen.add(run.strategy)
        rep = json.loads(path.read_text())
        loaded, mismatched = len(rep.get("loaded", [])), rep.get("shape_mismatched", [])
        missing, unexpected = rep.get("missing", []), rep.get("unexpected", [])
        total = loaded + len(missing) + len(mismatched)
        share = f"{loaded}/{total} ({100 * loaded / total:.1f}%)" if total else "—"
        cells = [run.strategy, rep.get("source", ""), rep.get("rule", ""), share, str(len(rep.get("dropped_head", [])))]
        cells += [str(len(mismatched)), str(len(missing)), str(len(unexpected)), ", ".join(rep.get("head_keys", []))]
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
        listed = [("shape-mismatched", [f"{k}: {s} vs {t}" for k, s, t in mismatched]), ("missing", missing)]
        listed.append(("unexpected", unexpected))
        for what, keys in listed:
            if keys:
                items = "".join(f"<li><code>{escape(str(k))}</code></li>" for k in keys)
                details.append(
                    f"<details><summary>{escape(run.strategy)}: {len(keys)} {what}</summary><ul>{items}</ul></details>"
                )
    if not rows:
        return '<h2 id="weights">Pretrained weights</h2><p>No load report saved.</p>'
    head = "".join(
        f"<th>{h}</th>"
        for h in ("strategy", "source", "rule", "backbone tensors loaded", "old head dropped", "shape-mismatched")
        + ("missing", "unexpected", "new head")
    )
    return (
        f'<h2 id="weights">Pretrained weights (load report)</h2><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{''.join(details)}"
    )


def data_section(result: CompareResult) -> str:
    data = {k: v for k, v in result.info.get("data", {}).items() if isinstance(v, dict)}
    if not data:
        return '<h2 id="data">Dataset</h2><p>No dataset summary saved.</p>'
    splits = list(data)
    classes = next(iter(data.values())).get("classes", [])
    head = "".join(f"<th>{escape(s)}</th>" for s in splits)
    rows = "".join(
        f"<tr><td>{escape(c)}</td>"
        + "".join(f"<td>{data[s].get('counts', {}).get(c, 0)}</td>" for s in splits)
        + "</tr>"
        for c in classes
    )
    total = "".join(f"<td><b>{data[s].get('n_images', '')}</b></td>" for s in splits)
    sizes = "".join(
        f"<li><b>{escape(s)}</b> ({escape(str(d.get('name', '')))}): {escape(_sizes(d))}</li>" for s, d in data.items()
    )
    return (
        f'<h2 id="data">Dataset</h2><p>{len(classes)} classes.</p><table><thead><tr><th>class</th>{head}</tr>'
        f"</thead><tbody>{rows}<tr><td><b>total</b></td>{total}</tr></tbody></table>"
        f"<p>Image sizes seen (width × height, from a sample):</p><ul>{sizes}</ul>"
    )


def _sizes(described: dict) -> str:
    s = described.get("image_sizes") or {}
    if s.get("min_width") is None:
        return "unknown"
    w = f"{s['min_width']}" if s["min_width"] == s["max_width"] else f"{s['min_width']}–{s['max_width']}"
    h = f"{s['min_height']}" if s["min_height"] == s["max_height"] else f"{s['min_height']}–{s['max_height']}"
    bad = f", {s['unreadable']} unreadable" if s.get("unreadable") else ""
    return f"{w} × {h} px ({s.get('sampled', 0)} images sampled{bad})"


def config_section(result: CompareResult) -> str:
    text = yaml.safe_dump(result.info.get("config", {}), sort_keys=False)
    extra = result.info.get("per_strategy") or {}
    if extra:
        text += "# per strategy\n" + yaml.safe_dump(extra, sort_keys=False)
    runs = "".join(f"<li><code>{escape(r.run_dir)}</code>: {escape(r.status)}</li>" for r in result.runs)
    return (
        f'<h2 id="config">Configuration</h2><p>Shared by every strategy (each sets its own <code>strategy</code>):</p>'
        f"<pre>{escape(text)}</pre><p>Run directories:</p><ul>{runs}</ul>"
    )
