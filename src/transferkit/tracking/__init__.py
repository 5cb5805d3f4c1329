"""Experiment tracking in the ecosystem's formats: TensorBoard event files and MLflow runs, beside metrics.jsonl.

metrics.jsonl stays the record of a run; a logger copies the same figures to a tool people already use. Each
logger is one module registered by name (``--log tensorboard,mlflow``) and imports its package only when a run
asks for it.
"""

from transferkit.tracking.base import (
    ExperimentLogger,
    Loggers,
    TrackingError,
    logger_names,
    open_loggers,
    parse_log,
    register_logger,
)
from transferkit.tracking.mlflow_logger import MlflowLogger
from transferkit.tracking.tensorboard_logger import TensorBoardLogger

__all__ = [
    "ExperimentLogger",
    "Loggers",
    "MlflowLogger",
    "TensorBoardLogger",
    "TrackingError",
    "logger_names",
    "open_loggers",
    "parse_log",
    "register_logger",
]
