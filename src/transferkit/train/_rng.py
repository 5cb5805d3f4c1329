"""Capture and restore every random-number generator a run uses, as tensors and plain containers.

The result goes into a file read with ``torch.load(weights_only=True)``, so nothing here may be an
arbitrary Python object: NumPy's state array becomes a tensor, Python's state a list of ints.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng"]


def capture_rng(loader_generators: dict[str, torch.Generator] | None = None) -> dict:
    """The state of the torch (CPU and CUDA), NumPy and Python RNGs, and of the given loader generators."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "loaders": {name: g.get_state() for name, g in (loader_generators or {}).items()},
    }
    return state


def restore_rng(state: dict, loader_generators: dict[str, torch.Generator] | None = None) -> None:
    """Put every generator back where `capture_rng` found it."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    for name, generator in (loader_generators or {}).items():
        if name in state.get("loaders", {}):
            generator.set_state(state["loaders"][name])
