"""Parsing list files: one ``<path> <label>`` line per image."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from transferkit.data.errors import DataError

_INTEGER = re.compile(r"-?[0-9]+")


class ListEntry(NamedTuple):
    """One image line of a list file."""

    lineno: int
    """The 1-based line number, for messages."""
    path: str
    """The image path as written, relative to the list's root unless absolute."""
    label: str
    """The label as written: a class name or an integer index."""


def read_list_file(list_file: Path, problems: list[str] | None = None) -> list[ListEntry]:
    """Splits a list file into entries, skipping blank lines and ``#`` comments.

    The label is the last whitespace-separated field, so paths may contain spaces.

    Args:
        problems: When given, a line without a label is recorded here and left out instead of raised.

    Raises:
        DataError: The file is missing or not UTF-8, or (without `problems`) a line has no label.
    """
    try:
        # utf-8-sig drops the byte-order mark that some Windows editors write.
        text = list_file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{list_file}: list file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{list_file}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{list_file}: cannot read: {exc.strerror}") from None

    entries = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.rsplit(maxsplit=1)
        if len(fields) != 2:
            _problem(problems, f"{list_file} line {lineno}: expected '<path> <label>', got {line!r}")
            continue
        entries.append(ListEntry(lineno, fields[0], fields[1]))
    return entries


def _problem(problems: list[str] | None, message: str) -> None:
    """Record `message` when collecting every problem (``transferkit check``), else raise it."""
    if problems is None:
        raise DataError(message)
    problems.append(message)


def resolve_labels(
    list_file: Path, entries: list[ListEntry], classes: list[str] | None, problems: list[str] | None = None
) -> tuple[list[int | None], list[str]]:
    """Maps each entry's label to a class index, inferring the classes when not given.

    Args:
        problems: When given, an unknown or out-of-range label is recorded here (its index None) instead of raised.

    Returns:
        The class index of each entry, and the class names.

    Raises:
        DataError: A label is unknown, out of range, negative, or (without ``classes``) the file
            mixes class names and integer indices. The message names the line.
    """
    is_index = [_INTEGER.fullmatch(e.label) is not None for e in entries]
    if classes is None:
        if all(is_index):
            for entry in entries:
                if int(entry.label) < 0:
                    raise DataError(f"{list_file} line {entry.lineno}: negative class index {entry.label}")
            indices = [int(e.label) for e in entries]
            return indices, [str(i) for i in range(max(indices) + 1)]
        if any(is_index):
            first_index = entries[is_index.index(True)]
            first_name = entries[is_index.index(False)]
            earlier, later = sorted([first_index, first_name])
            raise DataError(
                f"{list_file} line {later.lineno}: label {later.label!r} mixes class names and integer indices "
                f"(line {earlier.lineno} has {earlier.label!r}); use one kind, or pass the class list"
            )
        classes = sorted({e.label for e in entries})

    lookup = {name: i for i, name in enumerate(classes)}
    labels: list[int | None] = []
    for entry, index in zip(entries, is_index, strict=True):
        if entry.label in lookup:
            labels.append(lookup[entry.label])
        elif index and 0 <= int(entry.label) < len(classes):
            labels.append(int(entry.label))
        elif index:
            out_of_range = f"class index {entry.label} is out of range for {len(classes)} classes"
            _problem(problems, f"{list_file} line {entry.lineno}: {out_of_range}")
            labels.append(None)
        else:
            known = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            _problem(problems, f"{list_file} line {entry.lineno}: unknown class {entry.label!r} (classes: {known})")
            labels.append(None)
    return labels, list(classes)
