"""TorchScript export: a traced module with the preprocessing stored inside the archive."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from transferkit.export.errors import ExportError

__all__ = ["export_torchscript", "read_torchscript_metadata"]

_EXTRA = "preprocessing.json"


def export_torchscript(model: nn.Module, path: str | Path, sidecar: dict) -> Path:
    """Trace `model` (eval mode, CPU) and save it with `sidecar` as the archive's extra file ``preprocessing.json``.

    Tracing records the convolution graph for any batch size, so the file takes batches of any size.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = int(sidecar["image_size"])
    model = model.eval().cpu()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit announces its deprecation on every call
        traced = torch.jit.trace(model, torch.zeros(2, 3, size, size), check_trace=False)
        traced = torch.jit.freeze(traced)
        torch.jit.save(traced, str(path), _extra_files={_EXTRA: json.dumps(sidecar)})
    return path


def read_torchscript_metadata(path: str | Path) -> dict | None:
    """The preprocessing stored in a TorchScript file, or None when it holds none.

    Raises:
        ExportError: The file is not a TorchScript archive.
    """
    extra = {_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch.jit raises RuntimeError and friends for foreign files
        raise ExportError(f"{path}: not a TorchScript file ({exc})") from exc
    return json.loads(extra[_EXTRA]) if extra[_EXTRA] else None
