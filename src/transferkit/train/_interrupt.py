"""A stop asked for by a signal (Ctrl-C, SIGTERM), seen by long passes that run outside the training steps.

The training steps stop through the tracker, which saves a resumable state first. A pass that has nothing
to save (feature extraction, the prefix cache's activations) asks `stop_if_requested` once per batch, so it
ends within a batch instead of running on to the end of the data.
"""

from __future__ import annotations

import threading

from transferkit._console import console

__all__ = ["clear_stop", "request_stop", "stop_if_requested"]

_requested = threading.Event()


def request_stop() -> None:
    _requested.set()


def clear_stop() -> None:
    _requested.clear()


def stop_if_requested(what: str) -> None:
    """Raise KeyboardInterrupt when a stop was asked for; `what` names the pass for the message."""
    if _requested.is_set():
        console.print(f"interrupted during {what}; what it computed so far is not kept")
        raise KeyboardInterrupt
