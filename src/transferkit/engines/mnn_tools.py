"""MNN's command-line tools (the converter, the quantiser), run in a child process.

Both tools come from the `MNN` pip package's compiled `_tools` module. They run in a child process:
the C++ tools abort the whole process on some bad inputs, and the package's Python wrappers
(`MNN.tools.mnnconvert`/`mnnquant`) try to pip-install and call a remote logging service, which an
export must never do. The bundled `mnnquant` wrapper also passes its arguments in a form that the
compiled tool (3.x) no longer accepts, so the tools are called with argv lists directly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from transferkit.engines.errors import EngineError, MissingPackageError

__all__ = ["convert_onnx_to_mnn", "run_mnn_tool"]

_TIMEOUT_S = 1800


def convert_onnx_to_mnn(onnx_path: str | Path, mnn_path: str | Path) -> Path:
    """Convert an ONNX file to MNN (fp32 weights) with MNN's converter.

    Raises:
        MissingPackageError: MNN is not installed.
        EngineError: The converter failed; the message has its last output lines.
    """
    onnx_path, mnn_path = Path(onnx_path), Path(mnn_path)
    mnn_path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path)]
    argv += ["--bizCode", "transferkit"]
    run_mnn_tool("mnnconvert", argv, mnn_path)
    return mnn_path


def run_mnn_tool(tool: str, argv: list[str], output: Path) -> None:
    """Run MNN's compiled `tool` (``mnnconvert``, ``mnnquant``) with `argv` in a child process, writing `output`.

    Raises:
        MissingPackageError: MNN is not installed.
        EngineError: The tool failed, timed out, or left no `output`.
    """
    output.unlink(missing_ok=True)
    code = f"import sys, _tools; _tools.{tool}({argv!r}); sys.stdout.flush()"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"MNN {tool} did not finish within {_TIMEOUT_S} s") from exc
    log = (proc.stdout + proc.stderr).strip()
    if "No module named '_tools'" in log:
        raise MissingPackageError(
            "MNN is not installed; install it with: pip install 'transferkit[export]' (or pip install MNN)"
        )
    if proc.returncode != 0 or not output.is_file() or output.stat().st_size == 0:
        tail = "\n".join(log.splitlines()[-8:])
        raise EngineError(f"MNN {tool} failed (exit code {proc.returncode}) writing {output}:\n{tail}")
