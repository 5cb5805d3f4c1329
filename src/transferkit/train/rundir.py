"""The run directory: config, classes, metrics, load report and checkpoints of one training run."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

__all__ = ["RunDir", "new_run_dir"]


def new_run_dir(root: str | Path, name: str) -> Path:
    """`root/name-001`, `root/name-002`, ... the first that does not exist yet."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    taken = [
        int(m.group(1)) for p in root.glob(f"{safe}-*") if (m := re.fullmatch(rf"{re.escape(safe)}-(\d+)", p.name))
    ]
    path = root / f"{safe}-{max(taken, default=0) + 1:03d}"
    path.mkdir()
    return path


class RunDir:
    """Paths and writers of a run directory.

    Layout: ``config.yaml``, ``classes.json``, ``load_report.json``, ``metrics.jsonl``, ``metrics.csv``,
    ``best.safetensors``/``best.json``, ``last.safetensors``/``last.json``, ``summary.json``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def last(self) -> Path:
        return self.path / "last"

    def write_json(self, name: str, data: object) -> Path:
        path = self.path / name
        path.write_text(json.dumps(data, indent=2, default=str))
        return path

    def read_json(self, name: str) -> object:
        return json.loads((self.path / name).read_text())

    def append_metrics(self, row: dict) -> None:
        """One epoch's figures, appended to metrics.jsonl and metrics.csv as soon as they exist."""
        with open(self.path / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        csv_path = self.path / "metrics.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
