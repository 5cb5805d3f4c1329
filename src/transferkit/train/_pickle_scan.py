"""Tell a pickle that would build Python objects from bytes that are merely damaged, without unpickling.

``torch.load(weights_only=True)`` refuses both with the same ``UnpicklingError``; but the first is a file of
unknown origin that must never be loaded, the second a damaged checkpoint whose predecessor can stand in.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

__all__ = ["builds_objects"]

# Opcodes that import a name or call something: what a training state (tensors, dicts, numbers) needs only
# through torch's own allowed rebuild functions, and what a malicious pickle needs to run code.
_OBJECT_OPS = frozenset(
    {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2", "EXT4"}
)


def builds_objects(path: Path) -> bool:
    """Whether `path` is a whole, well-formed pickle (raw, or inside torch's zip format) that builds objects.

    Random or truncated bytes are not: they do not parse as opcodes that end exactly at the stream's STOP.
    """
    parsed = [_opcodes(stream) for stream in _pickle_streams(path)]
    if not parsed or any(ops is None for ops in parsed):
        return False
    return any(ops & _OBJECT_OPS for ops in parsed)


def _pickle_streams(path: Path) -> list[bytes]:
    if not zipfile.is_zipfile(path):
        return [path.read_bytes()]
    try:
        with zipfile.ZipFile(path) as archive:  # reading a member checks its CRC: damage shows here
            return [archive.read(name) for name in archive.namelist() if name.endswith(".pkl")]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return []


def _opcodes(stream: bytes) -> frozenset[str] | None:
    """The names of the opcodes of `stream`, or None unless it parses to a STOP that is its last byte."""
    names, end = set(), -1
    try:
        for op, _, pos in pickletools.genops(stream):
            names.add(op.name)
            end = pos
    except Exception:  # noqa: BLE001 - any parse failure means: not a whole pickle
        return None
    return frozenset(names) if names and end == len(stream) - 1 and "STOP" in names else None
