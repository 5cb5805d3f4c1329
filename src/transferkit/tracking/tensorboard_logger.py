"""``--log tensorboard``: event files under RUN/tensorboard, written by PyTorch's own `torch.utils.tensorboard`."""

from __future__ import annotations

from pathlib import Path

from transferkit.tracking.base import EPOCH_FIGURES, ExperimentLogger, register_logger

__all__ = ["TensorBoardLogger"]


@register_logger
class TensorBoardLogger(ExperimentLogger):
    """Scalars per epoch (``train/loss``, ``val/acc``, ``val/macro_f1``..., ``lr/<group>``), the figures as images,
    and the configuration as hparams with the final figures. View with ``tensorboard --logdir runs``.
    """

    name = "tensorboard"
    package = "tensorboard"
    install = "pip install tensorboard (or pip install 'transferkit[tracking]')"

    def __init__(self, run_dir: Path, config: dict) -> None:
        super().__init__(run_dir, config)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def log_epoch(self, row: dict, lrs: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        for key in EPOCH_FIGURES:
            value = row.get(key)
            if value is not None:
                split, _, figure = key.partition("_")
                self.writer.add_scalar(f"{split}/{figure}", float(value), epoch)
        for group, lr in lrs.items():
            self.writer.add_scalar(f"lr/{group}", float(lr), epoch)
        self.writer.flush()

    def finish(self, figures: dict[str, float], images: dict[str, Path]) -> None:
        import numpy as np
        from PIL import Image

        for name, path in images.items():
            with Image.open(path) as image:
                self.writer.add_image(name, np.asarray(image.convert("RGB")), dataformats="HWC")
        # hparams take numbers, strings and booleans; None and lists are written as text.
        hparams = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in self.config.items()}
        self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in figures.items()}, run_name="hparams")
        self.writer.close()
