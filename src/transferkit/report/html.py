"""The HTML report of a comparison (or of one run): one self-contained file, images embedded."""

from __future__ import annotations

from html import escape
from pathlib import Path

from transferkit.report import _sections as sections
from transferkit.report._load import ReportError, load_result
from transferkit.report._race import race_section
from transferkit.report._table import summary_table

__all__ = ["ReportError", "build_report", "load_result", "render_report", "summary_table"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta, .caption { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
tr.best td { font-weight: bold; background: #eef7ee; }
tr.failed td, p.failed { color: #b00020; }
img.wide { max-width: 100%; }
img.confusion { max-width: 560px; margin-right: 1.5em; }
.side { display: flex; flex-wrap: wrap; align-items: flex-start; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0.5em 0; }
figure.thumb { width: 130px; margin: 0; font-size: 0.8em; }
figure.thumb img { width: 112px; height: 112px; object-fit: contain; image-rendering: pixelated;
                   border: 1px solid #ccc; background: #fafafa; }
.true { color: #1b5e20; } .pred { color: #b00020; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
nav a { margin-right: 1em; }
"""


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of a compare directory (or a single run directory) and return its path.

    Everything comes from files already in the directory: ``compare.json`` (or ``summary.json``,
    ``metrics.jsonl``, ``config.yaml``, ``data.json``), the load reports, the evaluation folders and the
    PNGs; missing curves are redrawn from ``metrics.jsonl``.

    Example:
        >>> build_report("runs/demo/fashion-mnist-compare-001")   # doctest: +SKIP
        PosixPath('runs/demo/fashion-mnist-compare-001/report.html')

    Args:
        run_dir: A compare directory or a run directory.
        out: The HTML file to write (default: ``report.html`` inside `run_dir`).

    Raises:
        ReportError: `run_dir` is neither a compare nor a run directory.
    """
    result = load_result(run_dir)
    path = Path(out) if out else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result), encoding="utf-8")
    return path


def render_report(result) -> str:
    """The report of a `CompareResult` as one HTML document."""
    info = result.info
    title = f"transferkit: {result.compare_dir.name}"
    meta = [
        f"backbone {info.get('backbone', '?')}",
        f"strategies {', '.join(info.get('strategies', []))}",
        f"evaluated on the {info.get('eval_split') or '—'} set",
    ]
    if info.get("cv"):
        meta.append(f"{info['cv']}-fold cross-validation")
    if info.get("created"):
        meta.append(f"created {info['created']}")
    nav = "".join(
        f'<a href="#{k}">{v}</a>'
        for k, v in (
            ("summary", "summary"),
            ("curves", "curves"),
            ("confusion", "confusion"),
            ("examples", "mistakes"),
            ("weights", "weights"),
            ("data", "dataset"),
            ("config", "config"),
        )
    )
    body = "\n".join(
        section(result)
        for section in (
            sections.summary_section,
            sections.curves_section,
            sections.lr_find_section,
            race_section,
            sections.confusion_section,
            sections.examples_section,
            sections.load_section,
            sections.data_section,
            sections.config_section,
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class='meta'>{escape(' · '.join(meta))}</p><nav>{nav}</nav>\n"
        f"{body}\n</body></html>\n"
    )
