"""Feature engines agree with torch; the decoded-image cache gives the evaluation transform's pixels."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from transferkit.data import ImageDataset, build_transforms, from_folder
from transferkit.data.decoded import decoded_source
from transferkit.engines import EngineCheck, feature_runner
from transferkit.models import build_model, preprocessing_config
from transferkit.train.features import extract_source_features


@pytest.fixture
def model_and_pre():
    torch.manual_seed(0)
    built = build_model("tiny_effnet", 5, pretrained=False)
    model = built.model.eval()
    return model, preprocessing_config(model, built.spec, 64)


@pytest.mark.parametrize("engine", ["onnxruntime", "mnn"])
def test_engine_features_match_torch(model_and_pre, image_folder, tmp_path, engine):
    pytest.importorskip("onnxruntime" if engine == "onnxruntime" else "MNN")
    model, pre = model_and_pre
    source = from_folder(image_folder)
    reference = extract_source_features(model, source, pre, batch_size=16)
    got = extract_source_features(model, source, pre, engine=engine, batch_size=16, engine_folder=tmp_path)
    check = EngineCheck(engine, reference, got, model.get_classifier(), 0.0)
    assert check.ok, str(check)
    np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-4)
    assert list(tmp_path.glob("*.onnx"))  # exported once, kept for the next run


def test_auto_picks_an_engine_that_matches(model_and_pre, image_folder, tmp_path, capsys):
    model, pre = model_and_pre
    source = from_folder(image_folder)
    reference = extract_source_features(model, source, pre, batch_size=16)
    got = extract_source_features(model, source, pre, engine="auto", batch_size=16, engine_folder=tmp_path)
    np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-4)
    assert "feature engine:" in capsys.readouterr().err


def test_an_engine_that_disagrees_is_rejected(model_and_pre, image_folder):
    model, _ = model_and_pre
    reference = np.random.default_rng(0).normal(size=(8, model.num_features)).astype(np.float32)
    check = EngineCheck("bad", reference, -reference, model.get_classifier(), 0.0)
    assert not check.ok and "REJECTED" in str(check)
    with pytest.raises(ValueError, match="engine"):
        feature_runner("tensorrt", model, 64, torch.zeros(1, 3, 64, 64), None, "")


def test_decoded_images_give_the_evaluation_pixels(image_folder, tmp_path, model_and_pre, capsys):
    _, pre = model_and_pre
    folder = shutil.copytree(image_folder, tmp_path / "shapes")
    source = from_folder(folder)
    decoded = decoded_source(source, pre, tmp_path / "cache")
    side = round(pre.image_size / pre.crop_pct)
    assert decoded.arrays.shape == (len(source), side, side, 3)
    assert not decoded.arrays.flags.owndata  # a view of the memory-mapped file, not a copy in memory
    assert decoded.labels.tolist() == source.labels.tolist()
    transform = build_transforms(pre, train=False)
    original, cached = ImageDataset(source, transform), ImageDataset(decoded, transform)
    for i in (0, 13, len(source) - 1):
        torch.testing.assert_close(cached[i][0], original[i][0])

    assert "decoding once" in capsys.readouterr().err
    again = decoded_source(from_folder(folder), pre, tmp_path / "cache")
    np.testing.assert_array_equal(again.arrays, decoded.arrays)
    assert "decoded-image cache" not in capsys.readouterr().err  # a hit: nothing decoded

    target = source.paths[0]
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    decoded_source(from_folder(folder), pre, tmp_path / "cache")
    assert "decoded-image cache rebuilt" in capsys.readouterr().err
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npy"))) == 1


def test_auto_keeps_its_choice_for_later_runs_and_rechecks_a_changed_file(
    model_and_pre, image_folder, tmp_path, capsys, monkeypatch
):
    from transferkit.engines import features as engine_features

    if not engine_features.installed_engines():
        pytest.skip("neither onnxruntime nor MNN is installed")
    model, pre = model_and_pre
    source = from_folder(image_folder)
    reference = extract_source_features(model, source, pre, batch_size=16)

    def auto() -> np.ndarray:
        monkeypatch.setattr(engine_features, "_CHOSEN", {})  # as in a new process
        return extract_source_features(model, source, pre, engine="auto", batch_size=16, engine_folder=tmp_path)

    auto()
    (record,) = tmp_path.glob("*.auto.json")
    assert "agreement" in capsys.readouterr().err  # checked against torch the first time
    built = []
    real_build = engine_features._build
    monkeypatch.setattr(engine_features, "_build", lambda *a: built.append(a[0]) or real_build(*a))
    got = auto()
    err = capsys.readouterr().err
    assert "chosen in an earlier run" in err and not built  # nothing exported, converted or checked again
    np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-4)
    chosen = json.loads(record.read_text())
    if chosen["file"]:  # a damaged file is never trusted: the choice is made again
        (tmp_path / chosen["file"]).write_bytes(b"damaged")
        (tmp_path / chosen["file"]).unlink()
        auto()
        assert "chosen in an earlier run" not in capsys.readouterr().err and built


def test_auto_without_engine_packages_runs_torch_and_says_what_to_install(
    model_and_pre, image_folder, tmp_path, capsys, monkeypatch
):
    from transferkit.engines import features as engine_features

    monkeypatch.setattr(engine_features, "installed_engines", dict)
    monkeypatch.setattr(engine_features, "_CHOSEN", {})
    model, pre = model_and_pre
    source = from_folder(image_folder)
    reference = extract_source_features(model, source, pre, batch_size=16)
    got = extract_source_features(model, source, pre, engine="auto", batch_size=16, engine_folder=tmp_path)
    np.testing.assert_array_equal(got, reference)
    err = capsys.readouterr().err
    assert err.count("pip install 'transferkit[export]'") == 1 and not list(tmp_path.iterdir())
