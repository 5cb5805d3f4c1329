"""Run the command line under tcmalloc when it is installed: CPU training steps allocate and free large activation
buffers every step, and glibc's allocator returns them to the system and faults them in again (BENCHMARKS.md,
"Training-step speed"). tcmalloc keeps them. It can only be chosen before the process starts (LD_PRELOAD), so the
`transferkit` command re-executes itself once with it preloaded; the Python API runs under whatever the interpreter
was started with.

``TRANSFERKIT_MALLOC=system`` keeps the system allocator.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

__all__ = ["ENV", "preload_command", "reexec_with_tcmalloc", "tcmalloc_library"]

ENV = "TRANSFERKIT_MALLOC"
"""auto (the default: tcmalloc when installed) or system; set to tcmalloc in the re-executed process."""
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def tcmalloc_library() -> str | None:
    """Path of an installed tcmalloc (Debian/Ubuntu: ``apt install libtcmalloc-minimal4``), or None."""
    for path in _CANDIDATES:
        if Path(path).is_file():
            return path
    found = ctypes.util.find_library("tcmalloc_minimal")
    return found if found and Path(found).is_absolute() else None


def preload_command(argv: list[str], environ: dict[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute `argv` with tcmalloc preloaded, or None to run as is.

    None when `library` is None, the platform is not Linux, `ENV` says system (or tcmalloc: this process is the
    re-executed one), tcmalloc is preloaded already, or `argv` has no interpreter to re-execute.

    Example:
        >>> env = preload_command(["python", "-m", "transferkit"], {"LD_PRELOAD": "/x.so"}, "/lib/tc.so")
        >>> env["LD_PRELOAD"], env["TRANSFERKIT_MALLOC"]
        ('/lib/tc.so:/x.so', 'tcmalloc')
        >>> preload_command(["python"], {"TRANSFERKIT_MALLOC": "system"}, "/lib/tc.so") is None
        True
    """
    if library is None or not sys.platform.startswith("linux") or not argv:
        return None
    if environ.get(ENV, "auto") != "auto" or "tcmalloc" in environ.get("LD_PRELOAD", ""):
        return None
    preload = ":".join(p for p in (library, environ.get("LD_PRELOAD", "")) if p)
    return {**environ, "LD_PRELOAD": preload, ENV: "tcmalloc"}


def reexec_with_tcmalloc() -> None:
    """Replace this process with the same command line under tcmalloc, when `preload_command` says so.

    Called first thing by the `transferkit` command, before torch is imported; returns only when nothing is done.
    """
    argv = list(getattr(sys, "orig_argv", []))
    env = preload_command(argv, dict(os.environ), tcmalloc_library())
    if env is None:
        return
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:
        return  # could not re-execute: run on with the system allocator
