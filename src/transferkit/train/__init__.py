"""Parameter groups and optimisers, the loop, checkpoints and the run directory."""

from transferkit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from transferkit.train.loop import EpochResult, StepSettings, evaluate_loader, fit, train_one_epoch
from transferkit.train.optim import build_optimizer, build_scheduler, param_groups
from transferkit.train.rundir import RunDir, new_run_dir
from transferkit.train.runner import RunResult, resolve_device, seed_everything, train_run

__all__ = [
    "CheckpointError",
    "EpochResult",
    "RunDir",
    "RunResult",
    "StepSettings",
    "build_optimizer",
    "build_scheduler",
    "evaluate_loader",
    "fit",
    "load_checkpoint",
    "new_run_dir",
    "param_groups",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "train_one_epoch",
    "train_run",
]
