"""Checkpoints: safetensors weights plus a JSON sidecar, written atomically; resumable training state.

A resumable checkpoint is a *set* of three files sharing a stem: ``<stem>.safetensors`` (weights),
``<stem>.state.pt`` (optimiser, scheduler, RNG states, position; tensors and plain containers only, read
with ``torch.load(weights_only=True)``) and ``<stem>.json`` (the sidecar). Each file is written to a
temporary name and renamed, and all three carry the same random token, so a set whose files come from
different saves is recognised as damaged rather than mixed. A new set is written completely as
``<stem>.next`` before the current one becomes ``<stem>.prev``: whenever the process dies, at least one
complete set remains.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from transferkit import _json as finite_json
from transferkit._disk import is_disk_full, space_shortfall
from transferkit.train._pickle_scan import builds_objects

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "atomic_write_bytes",
    "checkpoint_problem",
    "load_checkpoint",
    "load_training_state",
    "read_sidecar",
    "save_checkpoint",
    "save_training_state",
]

_SET_SUFFIXES = (".safetensors", ".state.pt", ".json")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged or does not fit."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file holding Python objects that would run code when unpickled; it is never loaded."""


def _file(stem: Path, suffix: str) -> Path:
    # Appended, not with_suffix(): "last.prev" must become "last.prev.json", not "last.json".
    return stem.parent / f"{stem.name}{suffix}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite_state(stem: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"not saving {stem.name}: non-finite values in {', '.join(bad[:5])}")
    return state


def _write_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(stem: Path, model: nn.Module, meta: dict) -> Path:
    """Save `model`'s weights to `<stem>.safetensors` and `meta` to `<stem>.json`.

    Raises:
        CheckpointError: If any weight is NaN or infinite (a broken model never replaces a good one), or the disk
            has no room for it (the previous checkpoint is kept).
    """
    state = _finite_state(stem, model)
    sidecar = finite_json.dumps(meta, indent=2, default=str).encode()
    weights = _file(stem, ".safetensors")
    _remove_stale_temporaries(stem)
    with _disk_full_is_an_error(stem, _nbytes(state) + len(sidecar)):
        _write_weights(weights, state)
        atomic_write_bytes(_file(stem, ".json"), sidecar)
    return weights


def _nbytes(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for v in state.values())


@contextlib.contextmanager
def _disk_full_is_an_error(stem: Path, need: int) -> Iterator[None]:
    """Refuse to start a save that cannot fit, and turn a full disk met while writing into a clear error.

    Either way every file written so far has been removed by the writers, and the previous checkpoints
    are untouched.
    """
    need += 64 * 1024  # the safetensors header and the temporary files' slack
    shortfall = space_shortfall(stem.parent, need)
    if shortfall is None:
        try:
            yield
            return
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            shortfall = space_shortfall(stem.parent, need) or str(exc)
    raise CheckpointError(
        f"cannot save checkpoint {stem.name}: the disk is full ({shortfall}); the previous checkpoint is kept. "
        f"Free some space, then continue with --resume {stem.parent}"
    ) from None


def read_sidecar(stem: Path) -> dict:
    path = _file(stem, ".json")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint metadata not found: {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({exc})") from exc


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{path}: cannot be read as safetensors ({exc})") from exc


def checkpoint_problem(stem: Path) -> str | None:
    """Why `<stem>`'s weights or sidecar cannot be read, or None; reads the headers, not the weights.

    A truncated ``.safetensors`` shows here: its header promises more bytes than the file has.
    """
    try:
        read_sidecar(stem)
        with safe_open(str(_file(stem, ".safetensors")), framework="pt"):
            pass
    except CheckpointError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged or missing files
        return f"{_file(stem, '.safetensors')}: cannot be read as safetensors ({exc})"
    return None


def load_checkpoint(stem: Path, model: nn.Module) -> dict:
    """Load `<stem>.safetensors` into `model` (strictly) and return the sidecar metadata."""
    meta = read_sidecar(stem)
    path = _file(stem, ".safetensors")
    state = _read_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the model described by its metadata: {exc}") from exc
    return meta


def save_training_state(stem: Path, model: nn.Module, meta: dict, state: dict) -> Path:
    """Save a resumable set at `stem`, keeping the set it replaces as `<stem>.prev`.

    Args:
        stem: e.g. ``run_dir / "last"``.
        model: Its weights go to ``<stem>.safetensors`` (checked finite first).
        meta: The sidecar (classes, config, metrics...).
        state: Optimiser, scheduler, RNG states and position: tensors and plain containers only.

    Raises:
        CheckpointError: Non-finite weights, or no room on the disk; nothing is written.
        OSError: A write failed; the previous sets are untouched and no partial file is left.
    """
    weights = _finite_state(stem, model)
    token = uuid.uuid4().hex
    nxt, prev = stem.parent / f"{stem.name}.next", stem.parent / f"{stem.name}.prev"
    buffer = io.BytesIO()
    torch.save({**state, "token": token}, buffer)
    sidecar = finite_json.dumps({**meta, "token": token}, indent=2, default=str).encode()
    _remove_stale_temporaries(nxt)
    try:
        with _disk_full_is_an_error(stem, _nbytes(weights) + buffer.tell() + len(sidecar)):
            _write_weights(_file(nxt, ".safetensors"), weights, {"token": token})
            atomic_write_bytes(_file(nxt, ".state.pt"), buffer.getvalue())
            atomic_write_bytes(_file(nxt, ".json"), sidecar)
    except BaseException:
        _remove_set(nxt)
        raise
    if _complete(stem):
        _remove_set(prev)
        _rename_set(stem, prev)
    _rename_set(nxt, stem)
    return stem


def load_training_state(stem: Path, *, fallback: bool = True) -> tuple[Path, dict, dict, dict[str, torch.Tensor], list]:
    """Read the newest complete resumable set at `stem` (or its `.next`/`.prev` neighbours).

    Args:
        stem: e.g. ``run_dir / "last"``.
        fallback: Try ``<stem>.next`` and ``<stem>.prev`` when `stem` itself is damaged.

    Returns:
        The stem actually read, the sidecar, the training state, the weights, and one message per damaged
        set that was passed over (for a warning).

    Raises:
        UnsafeCheckpointError: A state file would run code when unpickled (never falls back: that is not damage).
        CheckpointError: No complete set; the message names every file tried and what is wrong with it.
    """
    candidates = [stem]
    if fallback:
        _roll_forward(stem)
        # .next exists only if a save was interrupted after it was complete, so it is the newest.
        candidates = [stem.parent / f"{stem.name}.next", stem, stem.parent / f"{stem.name}.prev"]
    problems: list[str] = []
    for candidate in candidates:
        if not any(_file(candidate, s).exists() for s in _SET_SUFFIXES):
            if candidate == stem:
                problems.append(f"{_file(stem, '.state.pt')}: not found")
            continue
        try:
            meta, state, weights = _read_set(candidate)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        return candidate, meta, state, weights, problems
    raise CheckpointError("no complete training state to resume from: " + "; ".join(problems))


def _read_set(stem: Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    missing = [str(_file(stem, s)) for s in _SET_SUFFIXES if not _file(stem, s).exists()]
    if missing:
        raise CheckpointError(f"incomplete checkpoint {stem.name}: missing {', '.join(missing)}")
    meta = read_sidecar(stem)
    weights_path, state_path = _file(stem, ".safetensors"), _file(stem, ".state.pt")
    weights = _read_weights(weights_path)
    with safe_open(str(weights_path), framework="pt") as fh:
        weights_token = (fh.metadata() or {}).get("token")
    state = read_state_file(state_path)
    tokens = {meta.get("token"), weights_token, state.get("token")}
    if len(tokens) != 1 or None in tokens:
        raise CheckpointError(f"checkpoint {stem.name}: its files come from different saves (interrupted write)")
    return meta, state, weights


def read_state_file(path: Path) -> dict:
    """Read a training-state file with ``weights_only=True``: tensors and plain containers, never code.

    Raises:
        UnsafeCheckpointError: The file holds other Python objects; it is refused, and nothing in it runs.
        CheckpointError: The file is empty, truncated or not a state file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # Refused by the weights-only unpickler: a pickle that names globals is unsafe, random bytes are damage.
        if "Unsupported global" in str(exc) or builds_objects(path):
            raise UnsafeCheckpointError(
                f"{path}: refused: it contains Python objects or pickle instructions that could run code when "
                "loaded; a training state holds only tensors and plain values. Do not resume from a file of "
                "unknown origin."
            ) from None
        raise CheckpointError(f"{path}: damaged training state (not a readable state file)") from None
    except Exception as exc:  # EOFError, RuntimeError (bad zip), ... for truncated or empty files
        raise CheckpointError(f"{path}: damaged training state ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "optimizer" not in state:
        raise CheckpointError(f"{path}: not a transferkit training state")
    return state


def _token(path: Path) -> str | None:
    """The save token a file of a set carries, or None when it is missing or unreadable."""
    try:
        if path.name.endswith(".json"):
            return json.loads(path.read_text()).get("token")
        if path.name.endswith(".safetensors"):
            with safe_open(str(path), framework="pt") as fh:
                return (fh.metadata() or {}).get("token")
        return read_state_file(path).get("token")
    except Exception:  # noqa: BLE001 - any unreadable file simply has no token
        return None


def _roll_forward(stem: Path) -> None:
    """Finish a save whose renames were cut short, so that `<stem>` is again the newest complete set.

    Two cases: `.next` is complete (the process died while `<stem>` was moving to `.prev`, or before): move
    what is left of `<stem>` over `.prev`, then `.next` to `<stem>`. Or `.next` is partly renamed already
    (the process died moving it): finish when its files and those already moved carry one token.
    """
    nxt, prev = stem.parent / f"{stem.name}.next", stem.parent / f"{stem.name}.prev"
    pending = [s for s in _SET_SUFFIXES if _file(nxt, s).exists()]
    if not pending:
        return
    if len(pending) == len(_SET_SUFFIXES):
        try:
            _read_set(nxt)
        except CheckpointError:
            return  # an incomplete write of .next: the sets it would replace are still whole
        _rename_set(stem, prev)
        _rename_set(nxt, stem)
        return
    moved = [s for s in _SET_SUFFIXES if s not in pending]
    if not all(_file(stem, s).exists() for s in moved):
        return
    tokens = {_token(_file(nxt, s)) for s in pending} | {_token(_file(stem, s)) for s in moved}
    if len(tokens) == 1 and None not in tokens:
        _rename_set(nxt, stem)


def _remove_stale_temporaries(stem: Path) -> None:
    # A process killed between creating a temporary file and renaming it cannot clean up after itself;
    # one run directory has one writer, so any temporary of this stem is such a leftover.
    for suffix in _SET_SUFFIXES:
        for leftover in stem.parent.glob(f".{stem.name}{suffix}.*"):
            leftover.unlink(missing_ok=True)


def _complete(stem: Path) -> bool:
    return all(_file(stem, s).exists() for s in _SET_SUFFIXES)


def _remove_set(stem: Path) -> None:
    for suffix in _SET_SUFFIXES:
        _file(stem, suffix).unlink(missing_ok=True)


def _rename_set(src: Path, dst: Path) -> None:
    # The sidecar goes last: evaluate reads it first, so a half-renamed set is never mistaken for whole.
    for suffix in (".safetensors", ".state.pt", ".json"):
        if _file(src, suffix).exists():
            os.replace(_file(src, suffix), _file(dst, suffix))
