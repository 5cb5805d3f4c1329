"""The `transferkit` command re-executes itself under tcmalloc when it is installed, once, and only then."""

import os
import subprocess
import sys

import pytest

from transferkit._malloc import ENV, preload_command, tcmalloc_library


def test_preload_command_prepends_the_library_and_marks_the_process():
    env = preload_command(["python", "-m", "transferkit", "train"], {"PATH": "/bin"}, "/lib/libtc.so")
    assert env == {"PATH": "/bin", "LD_PRELOAD": "/lib/libtc.so", ENV: "tcmalloc"}


@pytest.mark.parametrize(
    "environ,library",
    [
        ({ENV: "system"}, "/lib/libtc.so"),  # the user asked for the system allocator
        ({ENV: "tcmalloc"}, "/lib/libtc.so"),  # this is the re-executed process: never loop
        ({"LD_PRELOAD": "/opt/libtcmalloc.so"}, "/lib/libtc.so"),  # preloaded already
        ({}, None),  # not installed
    ],
)
def test_preload_command_leaves_the_process_alone(environ, library):
    assert preload_command(["python", "-m", "transferkit"], environ, library) is None


def _maps_under(env_extra: dict) -> str:
    code = "from transferkit.cli import console_main; import sys; sys.argv[1:] = ['--version']; console_main()"
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "LD_PRELOAD")}
    # The re-executed process prints its own memory map before --version exits.
    env.update(env_extra, PYTHONSTARTUP="")
    probe = "import atexit; atexit.register(lambda: print(open('/proc/self/maps').read().count('tcmalloc') > 0))"
    return subprocess.run(
        [sys.executable, "-c", f"{probe}; {code}"], env=env, capture_output=True, text=True, timeout=120
    ).stdout


@pytest.mark.skipif(tcmalloc_library() is None or not sys.platform.startswith("linux"), reason="tcmalloc absent")
def test_the_command_runs_under_tcmalloc_unless_told_otherwise():
    assert _maps_under({}).strip().endswith("True")
    assert _maps_under({ENV: "system"}).strip().endswith("False")
