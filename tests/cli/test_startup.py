"""The command line starts without importing torch and friends; --version reads the package metadata."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import transferkit

HEAVY = "('torch', 'timm', 'torchvision', 'matplotlib', 'sklearn')"


def test_version_and_help_need_no_torch():
    # build_parser: every sub-command's options, train's included (they come from TrainConfig's fields).
    code = (
        "import sys, transferkit.cli\ntransferkit.cli.build_parser()\n"
        f"heavy = [m for m in {HEAVY} if m in sys.modules]\n"
        "print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]"

    argv = [sys.executable, "-m", "transferkit", "--version"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"transferkit {version('transferkit')}"
    assert transferkit.__version__ == version("transferkit")  # one place: the package metadata


def test_listing_and_checking_need_no_torch(image_folder):
    code = (
        "import sys\nfrom transferkit.cli import main\n"
        f"assert main(['backbones']) == 0\nassert main(['check', {str(image_folder)!r}]) == 0\n"
        f"heavy = [m for m in {HEAVY} if m in sys.modules]\n"
        "print('heavy:', heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout and "tiny_resnet" in proc.stdout and "36 readable images" in proc.stdout
