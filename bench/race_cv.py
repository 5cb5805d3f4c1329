"""Would cross-validated race trials choose better on tiny validation sets? Scores each strategy by k-fold CV.

At 10 images per class the race's validation split holds 20 images: one image is 5 points, and the race's choice
is that noisy. Here each candidate (baseline, linear-probe, lp-ft, full; each as ``compare`` trains it) is scored
by its mean best validation accuracy over ``--folds`` stratified folds of the cell's training images, the winner
chosen by the product's `choose_winner` (ties to the cheaper), and graded by the test accuracy of that strategy's
fixed run in the same cell of ``auto_race.py`` (the run the winner would train: same split, seed and settings).
Beside it, the choice the race made on its one split. Nothing here changes the product.

    python bench/race_cv.py runs/auto/dev/results.jsonl runs/auto/held/results.jsonl --per-class 10 --folds 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from race_rules import FIXED, ONCE
from small_data_sets import load, print_tables
from transferkit import TrainConfig, train_run
from transferkit.advise.race import Entrant, Trial, choose_winner
from transferkit.data.split import stratified_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.jsonl files of auto_race.py")
    parser.add_argument("--per-class", default="10", help="cells of these sizes only")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()
    sizes = {int(n) for n in args.per_class.split(",")}
    rows = [json.loads(line) for path in args.results for line in Path(path).read_text().splitlines() if line]
    done = []
    for row in (r for r in rows if r["per_class"] in sizes):
        began = time.perf_counter()
        train, _ = load(row["dataset"], row["per_class"], row["seed"])
        config = TrainConfig(
            backbone="efficientnet_lite0", epochs=args.epochs, lr=args.lr, image_size=args.px, seed=row["seed"],
            checkpoint_every_steps=0,
        )  # fmt: skip
        folds = stratified_folds(train.labels, args.folds, seed=row["seed"], names=list(train.classes))
        cv = {}
        with tempfile.TemporaryDirectory() as tmp:
            for strategy in FIXED:
                accs = []
                for k, (tr, va) in enumerate(folds):
                    result = train_run(
                        replace(config, strategy=strategy), train.subset(tr), train.subset(va),
                        run_dir=Path(tmp) / f"{strategy}-{k}",
                    )  # fmt: skip
                    accs.append(float(result.best_val_acc))
                cv[strategy] = sum(accs) / len(accs)
        order = [e["strategy"] for e in row["race"]["entrants"]] if row.get("race") else FIXED
        entrants = [Entrant(s, "", fixed=s in ONCE, trials=[Trial(None, cv[s], 0.0)]) for s in order if s in cv]
        winner = choose_winner(entrants, None).strategy
        done.append({**row, "cv": cv, "cv_winner": winner, "cv_seconds": time.perf_counter() - began})
        print(json.dumps({"cell": f"{row['dataset']}-{row['per_class']}-s{row['seed']}", "cv": cv, "winner": winner}),
              flush=True)  # fmt: skip
    print_tables(done, table)


def table(rows: list[dict]) -> str:
    head = "| data | per class | seed | CV accuracy (baseline / probe / lp-ft / full) | best fixed (test) | race chose"
    head += " | CV chose | CV s |"
    lines = [head, "|" + "---|" * 8]
    tally = {"race": [0, 0], "cv": [0, 0]}
    for r in rows:
        test = r["test"]
        best = max(FIXED, key=lambda s: test[s])
        cells = []
        for key, chosen in (("race", r["auto_chose"]), ("cv", r["cv_winner"])):
            gap, over = 100 * (test[chosen] - test[best]), 100 * (test[chosen] - test["baseline"])
            tally[key][0] += gap >= -1.0
            tally[key][1] += over >= 0.0
            cells.append(f"{chosen} {100 * test[chosen]:.2f} ({gap:+.2f})")
        cv = " / ".join(f"{100 * r['cv'][s]:.1f}" for s in FIXED)
        lines.append(
            f"| {r['dataset']} | {r['per_class']} | {r['seed']} | {cv} | {best} {100 * test[best]:.2f} | "
            f"{cells[0]} | {cells[1]} | {r['cv_seconds']:.0f} |"
        )
    n = len(rows)
    lines += ["", "| choice | within 1 point of the best | never below the baseline |", "|---|---|---|"]
    lines += [f"| {k} | {w} of {n} | {b} of {n} |" for k, (w, b) in tally.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
