"""MNN export: ONNX -> MNN with MNN's converter, and int8 post-training quantisation with calibration images.

Both tools come from the `MNN` pip package's compiled `_tools` module. They run in a child process:
the C++ tools abort the whole process on some bad inputs, and the package's Python wrappers
(`MNN.tools.mnnconvert`/`mnnquant`) try to pip-install and call a remote logging service, which an
export must never do. The bundled `mnnquant` wrapper also passes its arguments in a form that the
compiled tool (3.x) no longer accepts, so the tools are called with argv lists directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from transferkit.data import ImageSource, Preprocessing
from transferkit.export.errors import ExportError

__all__ = ["convert_onnx_to_mnn", "fully_connected_ops", "quantize_mnn"]

_TIMEOUT_S = 1800


def convert_onnx_to_mnn(onnx_path: str | Path, mnn_path: str | Path) -> Path:
    """Convert an ONNX file to MNN (fp32 weights) with MNN's converter.

    Raises:
        ExportError: MNN is not installed or the converter failed; the message has its last output lines.
    """
    onnx_path, mnn_path = Path(onnx_path), Path(mnn_path)
    mnn_path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path)]
    argv += ["--bizCode", "transferkit"]
    _run_tool("mnnconvert", argv, mnn_path)
    return mnn_path


def quantize_mnn(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: ImageSource,
    preprocessing: Preprocessing,
    *,
    max_images: int = 200,
    method: str = "KL",
    skip_ops: list[str] | None = None,
) -> Path:
    """Int8 post-training quantisation of an MNN file: weights and activations, calibrated on images.

    The calibration images are preprocessed here exactly as for inference (resize, centre crop) and
    written as PNGs of the model's input size, so MNN's own resize is the identity and only its
    normalisation (the same mean/std) applies.

    Args:
        fp32_path: The fp32 MNN file.
        int8_path: The file to write.
        calibration: Images to calibrate the activation ranges on (labels are ignored).
        preprocessing: The model's preprocessing.
        max_images: Calibrate on at most this many images, evenly spaced through `calibration`.
        method: Activation range method, ``KL`` (default) or ``EMA`` / ``ADMM``.
        skip_ops: MNN op names to keep in fp32 (see `fully_connected_ops`).

    Raises:
        ExportError: No calibration images, or MNN's quantisation tool failed.
    """
    import numpy as np

    if len(calibration) == 0:
        raise ExportError("int8 quantisation needs calibration images; none were given")
    size = preprocessing.image_size
    geometry = preprocessing.geometry()  # the same resize and crop as at inference
    picks = np.linspace(0, len(calibration), num=min(max_images, len(calibration)), endpoint=False).astype(int)
    with tempfile.TemporaryDirectory(prefix="transferkit-calib-") as tmp:
        folder = Path(tmp, "images")
        folder.mkdir()
        for n, i in enumerate(picks):
            image: Image.Image = geometry(calibration.load(int(i)))
            image.save(folder / f"{n:05d}.png")
        config = {
            "format": "RGB",
            "mean": [255.0 * m for m in preprocessing.mean],
            "normal": [1.0 / (255.0 * s) for s in preprocessing.std],
            "width": size,
            "height": size,
            "path": str(folder) + "/",
            "used_image_num": len(picks),
            "feature_quantize_method": method,
            "weight_quantize_method": "MAX_ABS",
        }
        if skip_ops:
            config["skip_quant_op_names"] = list(skip_ops)
        config_path = Path(tmp, "quant.json")
        config_path.write_text(json.dumps(config))
        int8_path = Path(int8_path)
        int8_path.parent.mkdir(parents=True, exist_ok=True)
        _run_tool("mnnquant", ["quantized.out", str(fp32_path), str(int8_path), str(config_path)], int8_path)
    # The tool leaves a per-layer dump of its calibration beside the model; it is not needed to run it.
    int8_path.with_name(int8_path.name + ".json").unlink(missing_ok=True)
    return int8_path


def fully_connected_ops(onnx_path: str | Path) -> list[str]:
    """MNN op names of the fully connected layers of an ONNX file, to keep them in fp32 when quantising.

    MNN's converter turns an ONNX ``Gemm`` into an op named ``<output>__matmul_converted``; ``MatMul`` nodes
    keep their name. Quantised, the classifier's matmul shifted whole logits: on an EfficientNet-Lite0 linear
    probe on Fashion-MNIST, int8 top-1 agreement with fp32 was 75% with it quantised and 100% without
    (60 validation images), while every convolution quantised well. A classifier head is a small share of
    the weights, so it stays fp32.
    """
    from transferkit.export.onnx import _import_onnx

    model = _import_onnx().load(str(onnx_path), load_external_data=False)
    names = []
    for node in model.graph.node:
        if node.op_type == "Gemm":
            names += [f"{node.output[0]}__matmul_converted", node.name]
        elif node.op_type == "MatMul":
            names.append(node.name or node.output[0])
    return [n for n in names if n]


def _run_tool(tool: str, argv: list[str], output: Path) -> None:
    output.unlink(missing_ok=True)
    code = f"import sys, _tools; _tools.{tool}({argv!r}); sys.stdout.flush()"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ExportError(f"MNN {tool} did not finish within {_TIMEOUT_S} s") from exc
    log = (proc.stdout + proc.stderr).strip()
    if "No module named '_tools'" in log:
        raise ExportError(
            "MNN is not installed; install it with: pip install 'transferkit[export]' (or pip install MNN)"
        )
    if proc.returncode != 0 or not output.is_file() or output.stat().st_size == 0:
        tail = "\n".join(log.splitlines()[-8:])
        raise ExportError(f"MNN {tool} failed (exit code {proc.returncode}) writing {output}:\n{tail}")
