"""An ensemble of the probe and a fine-tuned network on finished `bench/small_data.py` runs: each pair's class
probabilities averaged on the whole test set, beside each member alone. Nothing is retrained, and no choice is made
on the test set: the pairs are fixed in advance (linear-probe with lp-ft, linear-probe with full, lp-ft with full).

    python bench/ensemble.py runs/small-recipe
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from small_data_sets import load
from transferkit import load_run
from transferkit.evaluate import average_probabilities, run_logits

PAIRS = [("linear-probe", "lp-ft"), ("linear-probe", "full"), ("lp-ft", "full")]


def _accuracy(logits, labels) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="--out folders of bench/small_data.py (with results.jsonl)")
    args = parser.parse_args()
    rows = []
    for folder in map(Path, args.folders):
        for line in (folder / "results.jsonl").read_text().splitlines():
            cell = json.loads(line)
            _, test = load(cell["dataset"], cell["per_class"], cell["seed"])
            # The plain compare of the cell (no settings changed): digits-10-s0-001
            plain = folder / f"{cell['dataset']}-{cell['per_class']}-s{cell['seed']}-001"
            load_before = os.getloadavg()[0]
            logits = {}
            for name in {n for pair in PAIRS for n in pair}:
                if (plain / name / "best.safetensors").is_file():
                    logits[name], labels = run_logits(load_run(plain / name), test, tta="none", what=name)
            row = {
                "dataset": cell["dataset"], "per_class": cell["per_class"], "seed": cell["seed"],
                "alone": {n: _accuracy(v, labels) for n, v in sorted(logits.items())},
                "pairs": {
                    f"{a}+{b}": _accuracy(average_probabilities(logits[a], logits[b]), labels)
                    for a, b in PAIRS if a in logits and b in logits
                },
                "baseline": cell["test"].get("baseline"), "load": load_before,
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    pairs = [f"{a}+{b}" for a, b in PAIRS]
    print("\n| data | per class | seed | baseline | linear-probe | lp-ft | full | " + " | ".join(pairs) + " | load |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(pairs) + "---|")
    for r in rows:

        def pct(value):
            return "—" if value is None else f"{100 * value:.2f}"

        alone = [pct(r["alone"].get(n)) for n in ("linear-probe", "lp-ft", "full")]
        print(
            f"| {r['dataset']} | {r['per_class']} | {r['seed']} | {pct(r['baseline'])} | " + " | ".join(alone) + " | "
            + " | ".join(pct(r["pairs"].get(p)) for p in pairs) + f" | {r['load']:.1f} |"
        )  # fmt: skip


if __name__ == "__main__":
    main()
