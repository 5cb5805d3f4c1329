"""`export_run`: write a trained run as ONNX, MNN or TorchScript and prove the file computes the same thing."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from transferkit._console import console
from transferkit.engines import Sidecar, convert_onnx_to_mnn, iter_batches, load_engine
from transferkit.evaluate.inference import LoadedRun, load_run
from transferkit.export._checkdata import CheckData, image_source, run_check_data
from transferkit.export.errors import ExportError
from transferkit.export.parity import (
    FP32_TOLERANCE,
    INT8_TOLERANCE,
    ParityReport,
    Tolerance,
    compare_logits,
    images_per_second,
)

__all__ = ["FORMATS", "ExportResult", "export_run"]

FORMATS = {"onnx": ".onnx", "mnn": ".mnn", "torchscript": ".pt"}
"""Export format -> file suffix."""


@dataclass
class ExportResult:
    """The files an export kept (those within tolerance) and how each one it made compares with PyTorch."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    parity: list[ParityReport] = field(default_factory=list)


def export_run(
    run_dir: str | Path,
    fmt: str,
    *,
    out_dir: str | Path | None = None,
    int8: bool = False,
    calib: str | Path | None = None,
    check_data: str | Path | None = None,
    check_images: int = 256,
    which: str = "best",
    int8_tolerance: Tolerance = INT8_TOLERANCE,
) -> ExportResult:
    """Export a run's checkpoint and check its parity with the PyTorch model on real images.

    Writes ``model.<ext>`` (and ``model.int8.mnn`` with `int8`), ``preprocessing.json`` and ``parity.json``
    to `out_dir` (default ``<run>/export``). The parity images are the run's validation split, re-created
    from the run directory, or `check_data`. A model file is written under a temporary name and takes its
    final name only once its parity check passed; one that fails is removed (with any older file of its name).

    Args:
        run_dir: The run directory.
        fmt: ``onnx``, ``mnn`` or ``torchscript``.
        out_dir: Where to write; default ``<run_dir>/export``.
        int8: Also write an int8-quantised MNN file (``mnn`` only).
        calib: Calibration images for `int8`; default the run's training split.
        check_data: Images for the parity check when the run's own data is not available.
        check_images: Check on at most this many images (evenly spaced through the data).
        which: ``best`` or ``last`` checkpoint.
        int8_tolerance: What the int8 file must meet (default: 90% top-1 agreement, logits not compared).

    Raises:
        ExportError: Unknown format, a failed conversion, or a file outside the parity tolerance
            (fp32: top-1 agreement below 99.5% or a logit differing by more than 1e-3).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if int8 and fmt != "mnn":
        raise ExportError("int8 quantisation is available for --format mnn only")
    _refuse_model_file_run(Path(run_dir), which)
    run = load_run(run_dir, which)
    out = Path(out_dir) if out_dir else run.run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    sidecar = Sidecar(run.preprocessing, tuple(run.classes), run.meta.get("backbone", ""))
    data = run_check_data(run.run_dir, check_data)
    check = data.check.subset(_evenly(len(data.check), check_images))
    console.print(f"parity images: {len(check)} from {data.origin}")
    images = np.concatenate(list(iter_batches(check, run.preprocessing)))
    model = run.model.eval()
    with torch.inference_mode():
        reference = np.concatenate([model(torch.from_numpy(b)).numpy() for b in _chunks(images, 32)])
        torch_speed = images_per_second(lambda b: model(torch.from_numpy(b)), images, 32)

    result = ExportResult(out)
    (out / "preprocessing.json").write_text(json.dumps(sidecar.to_dict(), indent=2))
    staged: list[Path] = []  # every temporary file, removed in the end whatever happens
    try:
        targets = _write_files(fmt, run, out, sidecar, staged, int8=int8, calib=calib, data=data, tol=int8_tolerance)
        for final, path, precision, tolerance in targets:
            report = _check(path, fmt, precision, tolerance, images, reference, torch_speed, data.origin)
            report.file = str(final)
            console.print(report.summary())
            result.parity.append(report)
        for (final, path, _, _), report in zip(targets, result.parity, strict=True):
            if report.passed:
                os.replace(path, final)
                result.files.append(final)
            else:  # an older file of this name would be taken for this export's: it goes too
                final.unlink(missing_ok=True)
    finally:
        for path in staged:
            path.unlink(missing_ok=True)
    _write_parity(out / "parity.json", result.parity)
    failed = [r for r in result.parity if not r.passed]
    if failed:
        raise _outside_tolerance(failed, out / "parity.json")
    return result


def _outside_tolerance(failed: list[ParityReport], parity_file: Path) -> ExportError:
    details = "; ".join(
        f"{Path(r.file).name}: top-1 agreement {100 * r.top1_agreement:.2f}% (need "
        f"{100 * r.tolerance['min_top1_agreement']:.1f}%), max |logit diff| {r.max_abs_diff:.2e}"
        + (f" (limit {r.tolerance['max_abs_diff']:g})" if r.tolerance["max_abs_diff"] is not None else "")
        for r in failed
    )
    names = ", ".join(Path(r.file).name for r in failed)
    return ExportError(f"export outside parity tolerance: {details}; not kept: {names}; see {parity_file}")


def _staging(final: Path, staged: list[Path]) -> Path:
    """A temporary name beside `final` with its suffix (engines go by suffix), recorded in `staged`."""
    path = final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")
    staged.append(path)
    return path


def _write_files(
    fmt: str,
    run: LoadedRun,
    out: Path,
    sidecar: Sidecar,
    staged: list[Path],
    *,
    int8: bool,
    calib: str | Path | None,
    data: CheckData,
    tol: Tolerance,
) -> list[tuple[Path, Path, str, Tolerance]]:
    """Write the export under temporary names: (final name, temporary file, precision, tolerance) per file.

    Nothing takes its final name before its parity check passes, so a file that fails it is never found in
    `out` (where `predict` would use it).
    """
    model = run.model.eval()
    final = out / f"model{FORMATS[fmt]}"
    path = _staging(final, staged)
    if fmt == "onnx":
        from transferkit.export.onnx import export_onnx

        export_onnx(model, path, sidecar)
        return [(final, path, "fp32", FP32_TOLERANCE)]
    if fmt == "torchscript":
        from transferkit.export.torchscript import export_torchscript

        export_torchscript(model, path, sidecar)
        return [(final, path, "fp32", FP32_TOLERANCE)]
    from transferkit.export.mnn import fully_connected_ops, quantize_mnn
    from transferkit.export.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="transferkit-export-") as tmp:
        onnx_path = export_onnx(model, Path(tmp, "model.onnx"), sidecar)
        convert_onnx_to_mnn(onnx_path, path)
        fp32_ops = fully_connected_ops(onnx_path)
    targets = [(final, path, "fp32", FP32_TOLERANCE)]
    if int8:
        calibration = image_source(calib) if calib else data.calibration
        origin = calib or data.calibration_origin
        console.print(f"int8 calibration on {min(len(calibration), 200)} images from {origin}")
        int8_final = out / "model.int8.mnn"
        int8_path = _staging(int8_final, staged)
        quantize_mnn(path, int8_path, calibration, run.preprocessing, skip_ops=fp32_ops)
        targets.append((int8_final, int8_path, "int8", tol))
    return targets


def _check(
    path: Path,
    fmt: str,
    precision: str,
    tolerance: Tolerance,
    images: np.ndarray,
    reference: np.ndarray,
    torch_speed: float,
    origin: str,
) -> ParityReport:
    engine = load_engine(path)
    exported = np.concatenate([engine(b) for b in _chunks(images, 32)])
    figures = compare_logits(reference, exported, tolerance)
    return ParityReport(
        file=str(path),
        format=fmt,
        precision=precision,
        n_images=len(images),
        tolerance={"min_top1_agreement": tolerance.min_top1_agreement, "max_abs_diff": tolerance.max_abs_diff},
        file_bytes=path.stat().st_size,
        images_per_s=images_per_second(engine, images, 32),
        images_per_s_batch1=images_per_second(engine, images[:32], 1),
        torch_images_per_s=torch_speed,
        images_from=origin,
        **figures,
    )


def _refuse_model_file_run(run_dir: Path, which: str) -> None:
    """A probe trained on a cut model file checkpoints only its head: say where its whole model is instead."""
    model = run_dir / "export" / "model.onnx"
    if not model.is_file():
        return
    try:
        described = json.loads((run_dir / "data.json").read_text())
    except (OSError, json.JSONDecodeError):
        return
    if "backbone_file" in described:
        raise ExportError(
            f"{run_dir} was trained on the model file {described['backbone_file']} and has no PyTorch checkpoint "
            f"of a backbone to export (its {which} checkpoint holds the head alone); its model is {model} (predict "
            "from it directly)"
        )


def _write_parity(path: Path, reports: list[ParityReport]) -> None:
    """Write `reports` to parity.json, keeping the entries of other files still in the folder.

    Exporting one run to several formats into the same folder then leaves one parity.json with all of them.
    """
    written = {r.file for r in reports}
    kept = []
    try:
        previous = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, json.JSONDecodeError):
        previous = []  # a damaged file from an earlier export: the new figures replace it
    if isinstance(previous, list):
        kept = [
            e for e in previous if isinstance(e, dict) and e.get("file") not in written and Path(e["file"]).is_file()
        ]
    path.write_text(json.dumps(kept + [r.to_dict() for r in reports], indent=2))


def _evenly(n: int, limit: int) -> np.ndarray:
    return np.linspace(0, n, num=min(n, max(1, limit)), endpoint=False).astype(np.int64)


def _chunks(array: np.ndarray, size: int):
    for i in range(0, len(array), size):
        yield array[i : i + size]
