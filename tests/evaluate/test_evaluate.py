import json
import shutil

import pytest
import torch

from transferkit import evaluate_run, from_folder, from_list, load_run, predict_images
from transferkit.evaluate import run_logits
from transferkit.train import CheckpointError


def test_evaluate_writes_metrics_and_confusion_matrix(tmp_path, full_run, val_folder):
    source = from_folder(val_folder)
    metrics, out = evaluate_run(full_run.run_dir, source, out_dir=tmp_path / "eval")
    assert out == tmp_path / "eval"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["source"] == str(val_folder)
    assert saved["accuracy"] == metrics.accuracy
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics.n == 24 and metrics.support == [8, 8, 8]
    assert sum(map(sum, metrics.confusion)) == 24
    assert sum(metrics.confusion[i][i] for i in range(3)) == round(24 * metrics.accuracy)
    # Same checkpoint, same images, same preprocessing as the run's validation: the same accuracy.
    assert metrics.accuracy == pytest.approx(full_run.best_val_acc)
    assert 0 <= metrics.macro_f1 <= 1


def test_evaluate_defaults_to_the_run_folder_and_reads_list_files(full_run, list_file, image_folder):
    source = from_list(list_file, root=image_folder)
    metrics, out = evaluate_run(full_run.run_dir, source, which="last")
    assert out == full_run.run_dir / "eval"
    assert (out / "metrics.json").is_file() and (out / "confusion.png").is_file()
    assert metrics.n == 36


def test_evaluate_with_other_classes_is_an_error_and_with_fewer_is_not(tmp_path, full_run, val_folder):
    other = tmp_path / "other"
    for cls, new in (("blue", "cyan"), ("green", "green"), ("red", "red")):
        shutil.copytree(val_folder / cls, other / new)
    with pytest.raises(ValueError, match="classes the run was not trained on: cyan"):
        evaluate_run(full_run.run_dir, from_folder(other))
    shutil.rmtree(other / "cyan")
    metrics, _ = evaluate_run(full_run.run_dir, from_folder(other), out_dir=tmp_path / "eval")
    assert metrics.classes == ["blue", "green", "red"] and metrics.support == [0, 8, 8]
    assert metrics.recall[1] > 0.5 and metrics.recall[2] > 0.5  # green and red labelled as the run's green and red
    assert metrics.macro_f1 == pytest.approx((metrics.f1[1] + metrics.f1[2]) / 2)  # over the classes present


def test_predict_returns_sorted_top_k_probabilities(full_run, val_folder):
    source = from_folder(val_folder)
    paths = [source.paths[i] for i in (0, 8, 16)]
    results = predict_images(full_run.run_dir, paths, top_k=2)
    assert [r["path"] for r in results] == [str(p) for p in paths]
    run = load_run(full_run.run_dir)
    logits, labels = run_logits(run, source.subset([0, 8, 16]))
    for result, row in zip(results, logits, strict=True):
        probs = [t["probability"] for t in result["top"]]
        assert len(probs) == 2
        assert probs == sorted(probs, reverse=True)
        assert all(0 <= p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
        expected = row.softmax(0).topk(2)
        assert [t["index"] for t in result["top"]] == expected.indices.tolist()
        assert probs == pytest.approx(expected.values.tolist(), abs=1e-5)
        assert [t["class"] for t in result["top"]] == [run.classes[i] for i in expected.indices.tolist()]
    # top-k larger than the class count gives every class once, and the probabilities sum to one.
    everything = predict_images(run, paths[:1], top_k=10)[0]["top"]
    assert sorted(t["class"] for t in everything) == run.classes
    assert sum(t["probability"] for t in everything) == pytest.approx(1.0, abs=1e-5)


def test_load_run_restores_the_checkpoint(full_run):
    run = load_run(full_run.run_dir)
    assert run.classes == ["blue", "green", "red"]
    assert run.preprocessing.image_size == 32
    assert not run.model.training
    assert run.meta["epoch"] == full_run.best_epoch
    with torch.no_grad():
        assert run.model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_load_run_of_a_missing_or_damaged_run_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="run directory not found"):
        load_run(tmp_path / "nothing")
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match="best.json"):
        load_run(tmp_path / "run")
