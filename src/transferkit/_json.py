"""JSON that other readers accept: NaN and infinity, which JSON has no numbers for, are written as null."""

from __future__ import annotations

import json
import math

__all__ = ["dumps", "finite"]


def finite(value: object) -> object:
    """`value` with every NaN or infinite float (in nested dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: object, **kwargs) -> str:
    """`json.dumps` of `finite(value)`; Python's default would write bare ``NaN``, which is not JSON."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
