"""Config values checked against their fields' annotations, so a wrong type is an error that names the field.

YAML decides types by spelling: ``epochs: ten`` is a string, ``epochs: true`` a bool (which Python would count as
1), ``lr: 1e-4`` a string (YAML 1.1 wants ``1.0e-4``). Values that mean what the field wants are converted
(``"1e-4"`` to 1e-4, ``900`` to ``"900"`` for a string field); others are refused.
"""

from __future__ import annotations

import re

__all__ = ["FieldTypeError", "checked_value"]

_EXPECTED = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false"}


class FieldTypeError(ValueError):
    """A value of the wrong type for its field; the message names the field, the expected type and the value."""


def checked_value(name: str, annotation: object, value: object) -> object:
    """`value` for the field `name` annotated `annotation` (e.g. ``"int | None"``), converted where it is safe.

    Raises:
        FieldTypeError: The value cannot stand for the annotated type.
    """
    kinds = [k.strip() for k in str(annotation).split("|")]
    base = next((k for k in kinds if k != "None"), "")
    if base not in _EXPECTED or (value is None and "None" in kinds):
        return value  # not a simple scalar field (or an allowed None): nothing to check
    converted = _convert(base, value)
    if converted is _REFUSED:
        raise FieldTypeError(f"{name}: expected {_EXPECTED[base]}, got {value!r}")
    return converted


_REFUSED = object()


def _convert(base: str, value: object) -> object:
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return value if base == "bool" else _REFUSED
    if base == "bool":
        return _REFUSED
    if base == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        return _REFUSED
    if base == "float":
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return _REFUSED
        return _REFUSED
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) else _REFUSED
