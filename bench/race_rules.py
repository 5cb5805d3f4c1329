"""Which winner rule would `auto` have done best with? Replays the choice on cells `auto_race.py` already ran.

Every cell of ``auto_race.py`` holds each fixed strategy's best validation accuracy (its whole schedule, on the
split auto raced on) and its test accuracy, and auto's own race (``advice.json``). This script feeds those
validation figures to the product's `choose_winner` at several noise margins and grades each choice by test
accuracy, as ``auto_race.py`` grades auto: within 1 point of the best single strategy, and never below the
baseline. Two race shapes are replayed:

- *screened*: the race as auto ran it (a fine-tuner cut at the screen stays cut), only the final choice replayed;
- *unscreened*: every fine-tuner at its whole schedule (the fixed runs are those trials: same split, seed, plan);
- *by size*: screened when the validation split has fewer than ``--screen-below`` images (where one trial's score
  is noisy), unscreened otherwise;
- *fine-tuning screen*: the screen re-ranked by each fine-tuner's best epoch *after* its probe phase (a 2-epoch
  `lp-ft` trial probes for one epoch, and auto scored it by that probe epoch); the surviving fine-tuner then
  stands with its whole-schedule score.

Nothing trains; the test sets only grade.

    python bench/race_rules.py runs/bench-auto/results.jsonl --margins 0,0.5,1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from small_data_sets import print_tables
from transferkit.advise.race import Entrant, Trial, choose_winner

FIXED = ["baseline", "linear-probe", "lp-ft", "full"]
ONCE = {"baseline", "linear-probe"}
"""The candidates that run once (the classical baseline, the L-BFGS probe)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.jsonl files of auto_race.py")
    parser.add_argument("--margins", default="0,0.5,1", help="noise margins in standard errors")
    parser.add_argument("--screen-below", type=int, default=100, help="the by-size shape screens below this")
    args = parser.parse_args()
    rows = [json.loads(line) for path in args.results for line in Path(path).read_text().splitlines() if line]
    margins = [float(m) for m in args.margins.split(",")]
    print_tables(rows, lambda chosen: table(chosen, margins, args.screen_below))


def entrants_unscreened(row: dict) -> list[Entrant]:
    """Every fixed strategy as a race entrant scored by its best validation accuracy (the prior's order kept)."""
    order = [e["strategy"] for e in row["race"]["entrants"]] if row.get("race") else FIXED
    return [
        Entrant(s, "", fixed=s in ONCE, trials=[Trial(None, row["val"][s], 0.0)])
        for s in order
        if row["val"].get(s) is not None
    ]


def entrants_screened(row: dict) -> list[Entrant]:
    """The race's entrants as auto ran it, less the ones it cut before the final choice."""
    race = row["race"]
    out = []
    for e in race["entrants"]:
        if not e["trials"] or (e["dropped"] or "").startswith(("rung", "failed")):
            continue
        last = e["trials"][-1]
        out.append(
            Entrant(
                e["strategy"], "", fixed=e.get("fixed", False), trials=[Trial(last["epochs"], last["val_acc"], 0.0)]
            )
        )
    return out


def grade(row: dict, strategy: str) -> tuple[float, float, float]:
    """(test accuracy of `strategy`, its gap to the best fixed strategy, its gap to the baseline), in points."""
    test = row["test"]
    acc = test[strategy]
    best = max(test[s] for s in FIXED if test.get(s) is not None)
    return 100 * acc, 100 * (acc - best), 100 * (acc - test["baseline"])


def entrants_by_size(row: dict, screen_below: int) -> list[Entrant]:
    """Screened on a small validation split, unscreened on a larger one."""
    return entrants_screened(row) if row["val_images"] < screen_below else entrants_unscreened(row)


def probe_epochs(strategy: str, epochs: int) -> int:
    """The probe phase's epochs in a trial of `epochs` (lp-ft's default ``lp_epochs``: a third, at least one)."""
    return max(1, epochs // 3) if strategy == "lp-ft" else 0


def entrants_finetune_screen(row: dict) -> list[Entrant]:
    """The fixed entrants, and the fine-tuner whose screen trial fine-tuned best, at its whole-schedule score."""
    race = row["race"]
    fixed = [e for e in race["entrants"] if e.get("fixed")]
    tuners = [e for e in race["entrants"] if not e.get("fixed") and e["trials"]]

    def screen(e: dict) -> float:
        first = e["trials"][0]
        return max(first["curve"][probe_epochs(e["strategy"], first["epochs"]) :], default=0.0)

    kept = max(tuners, key=screen)  # max keeps the first of a tie: the prior's order, as the race does
    out = [Entrant(e["strategy"], "", fixed=True, trials=[Trial(None, row["val"][e["strategy"]], 0.0)]) for e in fixed]
    return out + [Entrant(kept["strategy"], "", trials=[Trial(None, row["val"][kept["strategy"]], 0.0)])]


def table(rows: list[dict], margins: list[float], screen_below: int) -> str:
    shapes = [
        ("screened", entrants_screened),
        ("unscreened", entrants_unscreened),
        (f"by size (<{screen_below})", lambda row: entrants_by_size(row, screen_below)),
        ("fine-tuning screen", entrants_finetune_screen),
    ]
    head = ["data", "per class", "seed", "val images", "best fixed (test)"]
    head += [f"{shape} m={m:g}" for shape, _ in shapes for m in margins]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tally = {(shape, m): [0, 0, 0] for shape, _ in shapes for m in margins}
    for r in rows:
        best = max((s for s in FIXED if r["test"].get(s) is not None), key=lambda s: r["test"][s])
        cells = [
            r["dataset"],
            str(r["per_class"]),
            str(r["seed"]),
            str(r["val_images"]),
            f"{best} {100 * r['test'][best]:.2f}",
        ]
        for shape, build in shapes:
            for m in margins:
                if shape != "unscreened" and not r.get("race"):
                    cells.append("-")
                    continue
                winner = choose_winner(build(r), r["val_images"], margin=m).strategy
                acc, gap, over = grade(r, winner)
                t = tally[(shape, m)]
                t[0] += 1
                t[1] += gap >= -1.0
                t[2] += over >= 0.0
                cells.append(f"{winner} {acc:.2f} ({gap:+.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    summary = ["", "| rule | within 1 point of the best | never below the baseline |", "|---|---|---|"]
    for (shape, m), (n, within, above) in tally.items():
        if n:
            summary.append(f"| {shape}, margin {m:g} SE | {within} of {n} | {above} of {n} |")
    return "\n".join(lines + summary)


if __name__ == "__main__":
    main()
