"""Linear probe on an exported ONNX file cut at a named node: candidates, features, training, one ONNX out."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from transferkit.cli import main
from transferkit.config import TrainConfig
from transferkit.data import Preprocessing, from_folder
from transferkit.engines import iter_batches
from transferkit.evaluate.inference import load_run
from transferkit.export import ExportError, export_run, load_engine
from transferkit.export._graph import cut_graph, load_model, resolve_cut
from transferkit.export.cut import train_from_model_file

ort = pytest.importorskip("onnxruntime")

POOL_NODE = "/global_pool/pool/GlobalAveragePool"  # what torch.onnx names timm's pooling in tiny_resnet


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 6, "lr": 1e-3, "batch_size": 8, "seed": 0, **overrides})


def test_a_wrong_node_lists_the_candidates(onnx_export, image_folder):
    model_file = onnx_export.out_dir / "model.onnx"
    with pytest.raises(ExportError) as caught:
        train_from_model_file(model_file, "/no/such/node", from_folder(image_folder), config=_config())
    message = str(caught.value)
    assert "'/no/such/node' is not in" in message and str(model_file) in message
    assert f"{POOL_NODE} (GlobalAveragePool)" in message and "['batch', 96, 1, 1]" in message
    assert "(Gemm) -> logits" in message  # the last nodes are listed too

    with pytest.raises(ExportError, match="--cut-at NODE is required") as caught:
        train_from_model_file(model_file, None, from_folder(image_folder), config=_config())
    assert POOL_NODE in str(caught.value)


def test_the_cut_graph_computes_the_backbone_features(onnx_export, full_run, val_folder):
    """Cut at the pooling node, the file gives what the PyTorch backbone gives before its head."""
    model = load_model(onnx_export.out_dir / "model.onnx")
    cut = cut_graph(model, resolve_cut(model, POOL_NODE))
    session = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
    pre = Preprocessing.from_dict(json.loads((onnx_export.out_dir / "preprocessing.json").read_text()))
    batch = next(iter_batches(from_folder(val_folder), pre, 16))
    (features,) = session.run(None, {"input": batch})
    net = load_run(full_run.run_dir).model
    with torch.inference_mode():
        expected = net.forward_head(net.forward_features(torch.from_numpy(batch)), pre_logits=True).numpy()
    np.testing.assert_allclose(features.reshape(len(batch), -1), expected, atol=1e-4)


@pytest.mark.parametrize("solver", ["lbfgs", "minibatch"])
def test_train_from_model_file_writes_one_working_onnx(tmp_path, onnx_export, image_folder, val_folder, solver):
    result = train_from_model_file(
        onnx_export.out_dir / "model.onnx",
        POOL_NODE,
        from_folder(image_folder),
        from_folder(val_folder),
        config=_config(head_solver=solver),
        test=from_folder(val_folder),
        run_dir=tmp_path / "cut",
    )
    assert result.feature_dim == 96 and result.cut_at.startswith(POOL_NODE)
    # The features of a network trained on these classes separate them: far above chance (1/3).
    assert result.best_val_acc >= 0.8 and result.test_acc >= 0.8
    # Trained: the loss ends well below chance level (ln 3 = 1.10).
    assert result.history and result.history[-1].train_loss < 0.5

    assert result.model_path == tmp_path / "cut" / "export" / "model.onnx"
    engine = load_engine(result.model_path)
    assert engine.classes == ["blue", "green", "red"]
    assert engine.sidecar.backbone.startswith("model.onnx@")
    assert engine(np.zeros((4, 3, 32, 32), np.float32)).shape == (4, 3)  # batch stays dynamic
    parity = json.loads((tmp_path / "cut" / "export" / "parity.json").read_text())
    assert parity["passed"] and parity["n_images"] == 24 and parity["max_abs_diff"] < 1e-3
    for name in ("config.yaml", "classes.json", "data.json", "metrics.jsonl", "summary.json"):
        assert (tmp_path / "cut" / name).is_file(), name
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["best_val_acc"] == result.best_val_acc and summary["feature_dim"] == 96

    # Such a run has no PyTorch checkpoint: exporting it says where its model is.
    with pytest.raises(ExportError, match="no PyTorch checkpoint") as caught:
        export_run(tmp_path / "cut", "onnx")
    assert str(result.model_path) in str(caught.value)

    # The written file is itself a model file: cutting it again finds the new head's nodes.
    with pytest.raises(ExportError, match="transferkit_head/Gemm"):
        train_from_model_file(result.model_path, "nope", from_folder(image_folder), config=_config())


def test_only_linear_probe_trains_on_a_model_file(onnx_export, image_folder):
    with pytest.raises(ExportError, match="only train the head"):
        train_from_model_file(
            onnx_export.out_dir / "model.onnx", POOL_NODE, from_folder(image_folder), config=_config(strategy="full")
        )


def test_cli_train_backbone_file(tmp_path, capsys, onnx_export, image_folder, val_folder):
    model_file = onnx_export.out_dir / "model.onnx"
    base = ["train", image_folder, "--val", val_folder, "--out", tmp_path, "--batch-size", "8", "--epochs", "3"]
    code = main([str(a) for a in [*base, "--backbone-file", model_file, "--cut-at", "wrong"]])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "Candidate nodes" in err and "GlobalAveragePool" in err

    code = main([str(a) for a in [*base, "--cut-at", POOL_NODE]])
    assert code == 2 and "--cut-at needs --backbone-file" in capsys.readouterr().err

    code = main([str(a) for a in [*base, "--backbone-file", model_file, "--cut-at", POOL_NODE, "--name", "cut"]])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (tmp_path / "cut-001" / "export" / "model.onnx").is_file() and "best val acc" in err


def test_a_missing_or_foreign_model_file_is_a_clear_error(tmp_path, image_folder):
    with pytest.raises(ExportError, match="model file not found"):
        train_from_model_file(tmp_path / "none.onnx", POOL_NODE, from_folder(image_folder))
    junk = tmp_path / "junk.onnx"
    junk.write_text("not onnx")
    with pytest.raises(ExportError, match="not an ONNX model"):
        train_from_model_file(junk, POOL_NODE, from_folder(image_folder))


def test_a_foreign_onnx_file_gets_its_input_size_and_imagenet_statistics(tmp_path, image_folder, val_folder):
    """A file transferkit did not write has no preprocessing metadata: its fixed input size and ImageNet mean/std."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000)
    ).eval()
    foreign = tmp_path / "foreign.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch announces that this exporter is no longer its default
        torch.onnx.export(net, (torch.zeros(1, 3, 48, 48),), str(foreign), dynamo=False, input_names=["image"])
    model = load_model(foreign)
    pool = next(n.name for n in model.graph.node if n.op_type == "GlobalAveragePool")
    result = train_from_model_file(
        foreign, pool, from_folder(image_folder), from_folder(val_folder), config=_config(), run_dir=tmp_path / "run"
    )
    pre = load_engine(result.model_path).preprocessing
    assert pre.image_size == 48 and pre.mean == (0.485, 0.456, 0.406)
    assert result.feature_dim == 8
    # The file keeps the foreign input name and its fixed batch of 1; the engine feeds it one image at a time.
    assert result.best_val_acc > 1 / 3
    assert load_engine(result.model_path)(np.zeros((5, 3, 48, 48), np.float32)).shape == (5, 3)


def test_the_cut_graph_runs_in_mnn_with_the_same_result(tmp_path, onnx_export, image_folder, val_folder):
    pytest.importorskip("MNN")
    results = {
        engine: train_from_model_file(
            onnx_export.out_dir / "model.onnx",
            POOL_NODE,
            from_folder(image_folder),
            from_folder(val_folder),
            config=_config(engine=engine),
            run_dir=tmp_path / engine,
        )
        for engine in ("onnxruntime", "mnn")
    }
    heads = {engine: load_engine(r.model_path) for engine, r in results.items()}
    batch = next(iter_batches(from_folder(val_folder), heads["mnn"].preprocessing, 24))
    # The features agree to float precision (~1e-5); L-BFGS stops on a tolerance, so the heads' logits agree to
    # a few thousandths (logits of size ~3) and their predictions exactly.
    mnn, ort = heads["mnn"](batch), heads["onnxruntime"](batch)
    np.testing.assert_allclose(mnn, ort, atol=5e-3)
    assert (mnn.argmax(1) == ort.argmax(1)).all()
    assert results["mnn"].best_val_acc == results["onnxruntime"].best_val_acc
