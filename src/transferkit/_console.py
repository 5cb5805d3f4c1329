"""The two consoles: results on stdout, diagnostics on stderr, and the quiet switch.

stdout carries only what a command produces (tables, JSON, the path of a written file), so that
``transferkit predict --json > out.json`` or a pipe into ``jq`` gets nothing else. Everything said along
the way (progress bars, load reports, epoch lines, warnings, errors) goes to stderr.
"""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["console", "print_error", "progress", "results", "set_verbosity"]

QUIET_ENV = "TRANSFERKIT_QUIET"


def _make(stderr: bool) -> Console:
    made = Console(stderr=stderr)
    # When the stream is not a terminal (CI, a pipe, a file) rich would wrap at 80 columns, which mangles
    # tables, so give it room.
    return made if made.is_terminal else Console(stderr=stderr, width=160)


results = _make(stderr=False)
"""Results: tables and summaries a command exists to produce (stdout)."""

console = _make(stderr=True)
"""Diagnostics: progress, warnings, load reports, epoch lines (stderr); silent in quiet mode."""

_errors = _make(stderr=True)  # never quiet: an error is the one diagnostic quiet mode keeps


def set_verbosity(level: str) -> None:
    """Choose how much the library says on stderr: ``"normal"``, or ``"quiet"`` (errors only).

    Results (stdout) are never silenced. The environment variable ``TRANSFERKIT_QUIET=1`` sets quiet mode
    at import.

    Example:
        >>> import transferkit
        >>> transferkit.set_verbosity("quiet")
        >>> transferkit.set_verbosity("normal")
    """
    if level not in ("normal", "quiet"):
        raise ValueError(f"verbosity must be 'normal' or 'quiet', got {level!r}")
    console.quiet = level == "quiet"


def print_error(message: str) -> None:
    """One ``error: ...`` line on stderr, in quiet mode too."""
    _errors.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)


def progress() -> Progress:
    """A progress bar (stderr) that shows count, elapsed and remaining time; off when stderr is not a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,
        disable=not console.is_terminal or console.quiet,  # quiet: quiet mode, or a torchrun process but rank 0
    )


if os.environ.get(QUIET_ENV, "").strip().lower() in ("1", "true", "yes"):
    set_verbosity("quiet")
