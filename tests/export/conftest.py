"""Fixtures for export tests: the shared tiny_resnet run exported once to ONNX."""

from __future__ import annotations

import pytest

from transferkit.export import export_run


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory, full_run):
    """`full_run` exported to ONNX in a folder of its own (the run directory itself is left untouched)."""
    return export_run(full_run.run_dir, "onnx", out_dir=tmp_path_factory.mktemp("export") / "onnx")
