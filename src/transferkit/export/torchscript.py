"""TorchScript export: a traced module with the sidecar (preprocessing, classes) stored inside the archive."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from transferkit.engines import Sidecar
from transferkit.engines.runtimes import TORCHSCRIPT_EXTRA

__all__ = ["export_torchscript"]


def export_torchscript(model: nn.Module, path: str | Path, sidecar: Sidecar) -> Path:
    """Trace `model` (eval mode, CPU) and save it with `sidecar` as the archive's extra file ``preprocessing.json``.

    Tracing records the convolution graph for any batch size, so the file takes batches of any size.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = sidecar.preprocessing.image_size
    model = model.eval().cpu()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit announces its deprecation on every call
        traced = torch.jit.trace(model, torch.zeros(2, 3, size, size), check_trace=False)
        traced = torch.jit.freeze(traced)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(sidecar.to_dict())})
    return path
