"""Flip test-time augmentation on finished `bench/small_data.py` runs: each network's best checkpoint scored on the
whole test set as it is and with `tta: flip` (each image's probabilities averaged with its mirror's, as
`run_logits(..., tta="flip")` does, from the same two passes). Nothing is retrained: both figures of a row are the
same weights.

    python bench/flip_tta.py runs/bench-small-data --strategies full,lp-ft
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from small_data_sets import load
from transferkit import load_run
from transferkit.evaluate import average_probabilities, mirrored, run_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="--out folders of bench/small_data.py (with results.jsonl)")
    parser.add_argument("--strategies", default="full,lp-ft", help="sub-run folders to score (comma-separated)")
    args = parser.parse_args()
    wanted = args.strategies.split(",")
    rows = []
    for folder in map(Path, args.folders):
        for line in (folder / "results.jsonl").read_text().splitlines():
            cell = json.loads(line)
            _, test = load(cell["dataset"], cell["per_class"], cell["seed"])
            prefix = f"{cell['dataset']}-{cell['per_class']}-s{cell['seed']}-"
            for compare_dir in sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.is_dir()):
                # digits-10-s0-001 -> "", digits-10-s0-probe_views-2-001 -> "probe_views-2"
                settings = compare_dir.name.rsplit("-", 1)[0][len(prefix) :]
                for strategy in wanted:
                    run = compare_dir / strategy
                    if not (run / "best.safetensors").is_file():
                        continue
                    load_before = os.getloadavg()[0]
                    loaded = load_run(run)
                    logits, labels = run_logits(loaded, test, tta="none", what="test")
                    mirror, _ = run_logits(loaded, mirrored(test), tta="none", what="test mirrored")
                    both = average_probabilities(logits, mirror)  # what tta: flip computes, from the same two passes
                    row = {
                        "dataset": cell["dataset"], "per_class": cell["per_class"], "seed": cell["seed"],
                        "column": strategy + (f"+{settings}" if settings else ""), "plain": _accuracy(logits, labels),
                        "flip": _accuracy(both, labels), "baseline": cell["test"].get("baseline"), "load": load_before,
                    }  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| data | per class | seed | column | plain | flip TTA | change | baseline | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        baseline = "—" if r["baseline"] is None else f"{100 * r['baseline']:.2f}"
        print(
            f"| {r['dataset']} | {r['per_class']} | {r['seed']} | {r['column']} | {100 * r['plain']:.2f} | "
            f"{100 * r['flip']:.2f} | {100 * (r['flip'] - r['plain']):+.2f} | {baseline} | {r['load']:.1f} |"
        )


def _accuracy(logits, labels) -> float:
    return float((logits.argmax(1) == labels).float().mean())


if __name__ == "__main__":
    main()
