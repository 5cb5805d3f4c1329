"""``--log mlflow``: parameters, metrics per epoch and the run folder as artifacts, in an MLflow tracking store."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from transferkit.tracking.base import EPOCH_FIGURES, ExperimentLogger, register_logger

__all__ = ["MlflowLogger", "tracking_uri"]

EXPERIMENT = "transferkit"
"""The experiment runs go to unless ``MLFLOW_EXPERIMENT_NAME`` names another."""
_SKIPPED = (".lock",)


def tracking_uri() -> tuple[str, str | None]:
    """The store runs go to, and where a new experiment keeps its artifacts (None: the store decides).

    ``$MLFLOW_TRACKING_URI`` when set; else a local store in ``./mlruns``: the SQLite database ``mlruns/mlflow.db``
    and the artifacts under ``mlruns/artifacts``. (MLflow 3 refuses a plain ``./mlruns`` file store unless
    ``MLFLOW_ALLOW_FILE_STORE=true``; set both variables to use one.)
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], None
    root = Path.cwd() / "mlruns"
    root.mkdir(exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


@register_logger
class MlflowLogger(ExperimentLogger):
    """One MLflow run per training run, named after the run folder, in the store `tracking_uri` names (by default
    ``./mlruns`` of the working folder). View with ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``.

    It talks to the store through an `MlflowClient` of its own: no global active run is left behind for the caller.
    """

    name = "mlflow"
    package = "mlflow"
    install = "pip install mlflow (or pip install 'transferkit[tracking]')"
    copies_run_dir = True

    def __init__(self, run_dir: Path, config: dict) -> None:
        super().__init__(run_dir, config)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.uri, artifacts = tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else self.client.create_experiment(name, artifact_location=artifacts)
        self.run_id = self.client.create_run(
            experiment, run_name=self.run_dir.name, tags={"transferkit.run_dir": str(self.run_dir.resolve())}
        ).info.run_id
        params = [Param(k, str(v)[:500]) for k, v in config.items()]
        for start in range(0, len(params), 100):  # the store takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log_epoch(self, row: dict, lrs: dict[str, float]) -> None:
        values = {k: row.get(k) for k in EPOCH_FIGURES} | {f"lr_{group}": lr for group, lr in lrs.items()}
        self._metrics(values, int(row["epoch"]))

    def finish(self, figures: dict[str, float], images: dict[str, Path]) -> None:
        self._metrics(figures, None)
        for path in sorted(self.run_dir.rglob("*")):
            if path.is_file() and path.name not in _SKIPPED:
                folder = path.parent.relative_to(self.run_dir).as_posix()
                self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)
        self.client.set_terminated(self.run_id)

    def _metrics(self, values: dict, step: int | None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), stamp, step or 0)
            for k, v in values.items()
            if v is not None and math.isfinite(float(v))
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
