"""The exception types that mean "the user's input is wrong" rather than "transferkit has a bug"."""

from __future__ import annotations

from transferkit.config import ConfigError
from transferkit.data import DataError
from transferkit.models import UnknownBackboneError, WeightFileError, WeightLoadError
from transferkit.train.checkpoint import CheckpointError
from transferkit.train.memory import NotEnoughMemoryError
from transferkit.train.rundir import RunDirLockedError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    UnknownBackboneError,
    WeightFileError,
    WeightLoadError,
    CheckpointError,
    RunDirLockedError,
    NotEnoughMemoryError,
    FileNotFoundError,
    ValueError,
)
