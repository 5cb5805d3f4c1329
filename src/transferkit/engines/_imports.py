"""Optional inference packages, imported where used, with the install hint when one is missing."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator

from transferkit.engines.errors import MissingPackageError

__all__ = ["cpu_threads", "optional_import"]

_PIP_NAMES = {"onnx": "onnx", "onnxruntime": "onnxruntime", "MNN": "MNN"}


def optional_import(module: str):
    """Import `module` (onnx, onnxruntime or MNN).

    Raises:
        MissingPackageError: It is not installed.
    """
    try:
        if module == "MNN" and module not in sys.modules:
            with _stdout_silenced():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackageError(
            f"{module} is not installed; install it with: pip install 'transferkit[export]' "
            f"(or pip install {_PIP_NAMES.get(module, module)})"
        ) from exc


def cpu_threads() -> int:
    """The threads an engine gets by default: as many as torch uses, at most the machine's cores."""
    import torch

    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Discard what C code writes to file descriptor 1 meanwhile.

    MNN prints its CPU feature line on import straight to the process's stdout, which would corrupt
    machine-readable output such as ``transferkit predict --json``.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable descriptor 1 (e.g. a closed stdout): nothing to protect
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            try:
                yield
            finally:
                os.dup2(saved, 1)
    finally:
        os.close(saved)
