import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from transferkit import TrainConfig, from_folder, from_list, train_run
from transferkit.models import build_model
from transferkit.train import _phases as runner_module
from transferkit.train import load_checkpoint

CLASSES = ["blue", "green", "red"]
RUN_FILES = [
    "config.yaml",
    "classes.json",
    "preprocessing.json",
    "load_report.json",
    "data.json",
    "metrics.jsonl",
    "metrics.csv",
    "best.safetensors",
    "best.json",
    "last.safetensors",
    "last.json",
    "summary.json",
]


def _config(strategy, **kwargs):
    # The mini-batch head: these tests check optimiser groups and learning rates (tests/speed cover L-BFGS).
    base = dict(
        backbone="tiny_resnet",
        strategy=strategy,
        epochs=2,
        lr=1e-3,
        batch_size=8,
        image_size=32,
        seed=0,
        head_solver="minibatch",
    )
    return TrainConfig(**{**base, **kwargs})


@pytest.fixture
def optimizer_groups(monkeypatch):
    """Records (name, lr, weight_decay) of every group each time the runner builds an optimiser."""
    calls = []
    real = runner_module.build_optimizer

    def spy(groups, config):
        calls.append([(g["name"], g["lr"], g["weight_decay"]) for g in groups])
        return real(groups, config)

    monkeypatch.setattr(runner_module, "build_optimizer", spy)
    return calls


@pytest.mark.parametrize(
    ("strategy", "extra", "phases"),
    [
        ("linear-probe", {}, ["probe", "probe"]),
        ("partial", {"freeze": 2}, ["partial", "partial"]),
        ("full", {}, ["full", "full"]),
        ("lp-ft", {"epochs": 3}, ["probe", "finetune", "finetune"]),
        ("scratch", {}, ["scratch", "scratch"]),
    ],
)
def test_train_run_writes_a_complete_run_dir(tmp_path, image_folder, optimizer_groups, strategy, extra, phases):
    config = _config(strategy, **extra)
    source = from_folder(image_folder)
    result = train_run(config, source, run_dir=tmp_path / "run")
    run = tmp_path / "run"
    assert result.run_dir == run
    for name in RUN_FILES:
        assert (run / name).is_file(), name

    saved = TrainConfig.from_yaml(run / "config.yaml")
    assert saved == config.with_recipe(len(source))  # the fields the recipe decides are saved resolved
    assert saved.batch_size is not None and saved.augmentation is not None
    assert json.loads((run / "classes.json").read_text()) == CLASSES
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, len(phases) + 1))
    assert [r["phase"] for r in rows] == phases
    assert len((run / "metrics.csv").read_text().splitlines()) == len(phases) + 1
    assert [r["val_acc"] for r in rows] == [h.val_acc for h in result.history]

    best, last = json.loads((run / "best.json").read_text()), json.loads((run / "last.json").read_text())
    assert last["epoch"] == len(phases)
    assert best["epoch"] == result.best_epoch
    assert best["metrics"]["val_acc"] == result.best_val_acc == max(r["val_acc"] for r in rows)
    assert best["classes"] == CLASSES and best["strategy"] == strategy and best["backbone"] == "tiny_resnet"
    model = build_model("tiny_resnet", 3, pretrained=False).model
    assert load_checkpoint(run / "last", model)["epoch"] == len(phases)

    report = json.loads((run / "load_report.json").read_text())
    assert report["head_keys"] == ["fc.weight", "fc.bias"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trainable_params"] + summary["frozen_params"] == sum(p.numel() for p in model.parameters())
    assert (summary["frozen_params"] > 0) == (strategy in ("linear-probe", "partial"))

    # The learning rates each phase was given (before the warm-up scales them).
    lr, head_lr = config.lr, config.lr * config.head_lr_mult
    group_lrs = [{name: lr for name, lr, _ in call} for call in optimizer_groups]
    if strategy == "linear-probe":
        assert group_lrs == [{"backbone": head_lr, "backbone-no-decay": head_lr}]  # the cached-features head
    elif strategy == "lp-ft":
        assert group_lrs[0] == {"backbone": head_lr, "backbone-no-decay": head_lr}
        # The fine-tune phase starts from the probe's trained head: one rate for every layer.
        assert group_lrs[1] == {"backbone": lr, "backbone-no-decay": lr, "head": lr, "head-no-decay": lr}
    elif strategy == "scratch":
        scratch_lr = lr * config.scratch_lr_mult
        assert group_lrs == [dict.fromkeys(["backbone", "backbone-no-decay", "head", "head-no-decay"], scratch_lr)]
    else:
        assert group_lrs == [{"backbone": lr, "backbone-no-decay": lr, "head": head_lr, "head-no-decay": head_lr}]
    for call in optimizer_groups:
        assert all(wd == (0.0 if name.endswith("no-decay") else config.weight_decay) for name, _, wd in call)


def test_full_fine_tuning_learns_the_generated_classes(full_run):
    history = full_run.history
    assert len(history) == 5
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    assert full_run.best_val_acc >= 0.9  # chance is 1/3
    assert history[-1].val_acc >= 0.75


def test_same_seed_gives_identical_metrics(tmp_path, image_folder):
    source = from_folder(image_folder)
    runs = [
        train_run(_config("full", seed=seed), source, run_dir=tmp_path / f"run{i}") for i, seed in enumerate([3, 3, 4])
    ]

    def figures(result):
        return [(h.train_loss, h.train_acc, h.val_loss, h.val_acc, h.lr) for h in result.history]

    assert figures(runs[0]) == figures(runs[1])
    a, b = load_file(str(runs[0].run_dir / "last.safetensors")), load_file(str(runs[1].run_dir / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert figures(runs[2]) != figures(runs[0])  # the seed matters, so the equality above is not vacuous


@pytest.mark.parametrize("feature_cache", [True, False])
def test_linear_probe_changes_nothing_but_the_head(tmp_path, image_folder, feature_cache):
    torch.manual_seed(5)
    pretrained = timm.create_model("test_resnet").state_dict()
    torch.save(pretrained, tmp_path / "pretrained.pth")
    config = _config("linear-probe", weights=str(tmp_path / "pretrained.pth"), feature_cache=feature_cache)
    train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    trained = load_file(str(tmp_path / "run" / "last.safetensors"))
    head = {"fc.weight", "fc.bias"}
    assert set(trained) == set(pretrained)
    for key in set(trained) - head:
        assert torch.equal(trained[key], pretrained[key]), key  # weights and BatchNorm statistics alike
    assert trained["fc.weight"].shape == (3, pretrained["fc.weight"].shape[1])
    assert torch.count_nonzero(trained["fc.bias"]) > 0  # the head (bias initialised to zero) did train


def test_list_file_and_explicit_validation_source(tmp_path, image_folder, val_folder, list_file):
    train = from_list(list_file, root=image_folder)
    result = train_run(_config("linear-probe"), train, from_folder(val_folder), run_dir=tmp_path / "run")
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["train"]["name"] == str(list_file) and data["train"]["n_images"] == 36
    assert data["val"]["counts"] == dict.fromkeys(CLASSES, 8)
    assert len(result.history) == 2
    with pytest.raises(ValueError, match="validation classes"):
        other = from_folder(val_folder).subset([0, 1, 2])
        other.classes = ["a", "b", "c"]
        train_run(_config("linear-probe"), train, other, run_dir=tmp_path / "run2")


def test_early_stopping_when_validation_accuracy_stalls(tmp_path, image_folder):
    # A learning rate too small to change any prediction: epoch 2 cannot beat epoch 1.
    config = _config("linear-probe", epochs=6, lr=1e-12, patience=1)
    result = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    assert result.stopped_early
    assert [h.epoch for h in result.history] == [1, 2]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_early"] is True


@pytest.mark.parametrize("bn_stats", ["frozen", "update"])
def test_fine_tuning_from_pretrained_weights_keeps_or_updates_batchnorm_statistics(tmp_path, image_folder, bn_stats):
    """`bn_stats` decides whether the pretrained running statistics survive full fine-tuning."""
    source = timm.create_model("test_resnet", num_classes=0, pretrained=False)
    for name, buf in source.named_buffers():
        if name.endswith("running_var"):
            buf.fill_(2.0)  # "pretrained" statistics that no training batch would produce
    weights = tmp_path / "pretrained.pth"
    torch.save(source.state_dict(), weights)

    config = _config("full", weights=str(weights), bn_stats=bn_stats)
    result = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    trained = load_file(result.run_dir / "last.safetensors")
    variances = [v for k, v in trained.items() if k.endswith("running_var")]
    kept = all(torch.all(v == 2.0) for v in variances)
    assert variances and kept == (bn_stats == "frozen")


@pytest.mark.parametrize("crop_pct", [1.0, 0.8])
def test_the_run_uses_its_own_evaluation_crop_not_the_pretrained_default(tmp_path, image_folder, crop_pct):
    result = train_run(
        _config("linear-probe", epochs=1, crop_pct=crop_pct), from_folder(image_folder), run_dir=tmp_path
    )
    saved = json.loads((result.run_dir / "preprocessing.json").read_text())
    assert saved["crop_pct"] == crop_pct


def test_threads_sets_torch_threads_and_the_run_line_says_it(tmp_path, image_folder, capsys):
    before = torch.get_num_threads()
    try:
        config = TrainConfig(backbone="tiny_resnet", strategy="linear-probe", epochs=1, image_size=32, threads=1)
        train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
        assert torch.get_num_threads() == 1
        assert "image size 32 px on cpu, torch threads: 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        TrainConfig(threads=0)
