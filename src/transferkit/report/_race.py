"""The report's account of ``strategy: auto``: the race its run held (``advice.json``), as a table and its curves."""

from __future__ import annotations

import json
from html import escape

from transferkit.comparison import CompareResult
from transferkit.report._sections import img
from transferkit.train.rundir import RunDir

__all__ = ["race_section"]

_HEADERS = ("strategy", "trials (epochs: best val acc)", "seconds", "outcome", "why it raced")


def race_section(result: CompareResult) -> str:
    """One table and one figure per run that ``auto`` chose by a race (nothing when none did)."""
    from transferkit.advise.race import Race

    parts = []
    for run in result.runs:
        folder = result.compare_dir / run.run_dir
        path = folder / "advice.json"
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if run.status != "ok" or not saved.get("race"):
            continue
        race = Race.from_dict(saved["race"])
        head = "".join(f"<th>{escape(h)}</th>" for h in _HEADERS)
        body = "".join(
            "<tr" + (' class="best"' if row[0] == race.winner else "") + ">"
            + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
            for row in race.rows()
        )  # fmt: skip
        pruned = "".join(f"<li>{escape(name)}: {escape(why)}</li>" for name, why in race.pruned.items())
        rule = saved.get("rule_strategy")
        said = f"; the advisor's rule said {rule}" if rule and rule != race.winner else ""
        fold = f", fold {run.fold}" if run.fold else ""
        title = f"{run.strategy}{fold}: {race.winner} won in {race.seconds:.0f} s{said}"
        parts.append(
            f"<h3>{escape(title)}</h3>"
            f"<p class='caption'>{escape(race.budget_note)}</p>"
            f"<table><tr>{head}</tr>{body}</table>" + (f"<p>Not raced:</p><ul>{pruned}</ul>" if pruned else "")
        )
        png = _race_curves(folder, race)
        if png is not None:
            caption = "validation (solid) and training (dashed) curves of every trial of the race"
            parts.append(f"<figure>{img(png, 'race curves')}<figcaption>{escape(caption)}</figcaption></figure>")
    if not parts:
        return ""
    return '<h2 id="race">How auto chose</h2>' + "".join(parts)


def _race_curves(folder, race):
    """``race.png`` in the run folder, drawn from the trials' metrics when it is not there yet."""
    from transferkit.report.plots import plot_curves

    png = folder / "race.png"
    if png.is_file():
        return png
    histories = {
        f"{e.strategy} {t.epochs} ep": RunDir(folder / t.run_dir).metrics()
        for e in race.entrants
        for t in e.trials
        if t.epochs is not None and (folder / t.run_dir).is_dir()
    }
    histories = {k: v for k, v in histories.items() if v}
    return plot_curves(histories, png, title="auto: the race's trials") if histories else None
