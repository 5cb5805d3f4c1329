"""Reading checkpoint files safely and unwrapping the containers other tools save them in."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["WeightFileError", "read_state_dict", "unwrap_state_dict"]

# Keys under which training tools nest the weights (timm train.py, torchvision references, Lightning, DDP).
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "model_state", "net", "module")
# Prefixes added by DataParallel/DDP, torch.compile and common wrappers.
_PREFIXES = ("module.", "_orig_mod.", "model.")


class WeightFileError(ValueError):
    """A weight file that cannot be read safely or holds no tensors."""


def read_state_dict(path: str | Path, *, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a `.safetensors`, `.pth`, `.pt` or `.bin` file into a flat state dict.

    Pickle-based files are read with `weights_only=True`, so a file that would run code is refused.

    Args:
        path: The weight file.
        allow_unsafe_pickle: Read a pickle with full unpickling. Only for files you trust.

    Returns:
        The unwrapped state dict (tensors only).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightFileError(f"{path}: not a valid safetensors file ({exc})") from exc
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
            hint = ""
            if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                hint = (
                    " The file contains Python objects that could run code when loaded; it was refused."
                    " Re-save it as safetensors, or pass --allow-unsafe-pickle if you trust its origin."
                )
            raise WeightFileError(f"{path}: cannot be read as a weight file ({type(exc).__name__}).{hint}") from exc
    state = unwrap_state_dict(raw)
    if not state:
        raise WeightFileError(f"{path}: holds no tensors")
    return state


def unwrap_state_dict(raw: object) -> dict[str, torch.Tensor]:
    """Find the state dict inside a checkpoint container and strip wrapper prefixes."""
    for _ in range(3):  # containers nest at most a couple of levels in practice
        if isinstance(raw, dict) and not _is_tensor_dict(raw):
            inner = next((raw[k] for k in _WRAPPER_KEYS if k in raw and isinstance(raw[k], dict)), None)
            if inner is None:
                break
            raw = inner
    if not isinstance(raw, dict):
        return {}
    state = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _is_tensor_dict(d: dict) -> bool:
    return bool(d) and sum(isinstance(v, torch.Tensor) for v in d.values()) > len(d) // 2
