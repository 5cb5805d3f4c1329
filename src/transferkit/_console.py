"""The shared console and progress bars."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Logs and tables go to stdout; when it is not a terminal (CI, a pipe, a file) rich would wrap at
# 80 columns, which mangles tables, so give it room.
console = Console()
if not console.is_terminal:
    console = Console(width=160)


def progress() -> Progress:
    """A progress bar that shows count, elapsed and remaining time; silent when output is not a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,
        disable=not console.is_terminal or console.quiet,  # quiet: a torchrun process other than rank 0
    )
