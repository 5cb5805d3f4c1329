"""Non-finite steps are skipped and counted (too many in a row stop the run); resuming warns about changes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from torch import nn

from transferkit.config import TrainConfig
from transferkit.data import from_folder
from transferkit.evaluate import evaluate_run
from transferkit.train import runner
from transferkit.train import setup as train_setup
from transferkit.train.checkpoint import CheckpointError, load_training_state
from transferkit.train.loop import EpochProgress, StepSettings, TrainingDivergedError, train_one_epoch


def _batches(n: int):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(n)]


class _NanAt(nn.Module):
    """Cross-entropy, but NaN on the given (1-based) calls."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.bad, self.calls = bad, 0

    def forward(self, logits, targets):
        self.calls += 1
        loss = nn.functional.cross_entropy(logits, targets)
        return loss * float("nan") if self.calls in self.bad else loss


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return model, optimizer, scheduler


def test_non_finite_loss_skips_the_step_and_counts_it(capsys):
    model, optimizer, scheduler = _setup()
    weights = []
    progress = EpochProgress()
    train_one_epoch(
        model, _batches(5), optimizer, scheduler, StepSettings(loss_fn=_NanAt({2, 4}), max_bad_steps=3),
        progress=progress, on_step=lambda p: weights.append(model.weight.detach().clone()),
    )  # fmt: skip
    assert progress.skipped_steps == 2 and progress.step == 5 and progress.seen == 12
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[2], weights[3])  # no update on 2 and 4
    assert not torch.equal(weights[1], weights[2])
    assert scheduler.last_epoch == 5  # the schedule still advances
    assert torch.isfinite(model.weight).all()
    err = " ".join(capsys.readouterr().err.split())
    assert "step 2: non-finite loss, step skipped" in err and "step 4: non-finite loss" in err


def test_non_finite_gradient_is_skipped_too(capsys):
    model, optimizer, scheduler = _setup()
    before = model.weight.detach().clone()
    model.weight.register_hook(lambda g: g * float("inf"))
    progress = EpochProgress()
    with pytest.raises(TrainingDivergedError, match="2 steps in a row"):
        train_one_epoch(
            model, _batches(3), optimizer, scheduler, StepSettings(max_bad_steps=2), progress=progress
        )  # fmt: skip
    assert torch.equal(model.weight, before)
    assert "non-finite gradient, step skipped" in " ".join(capsys.readouterr().err.split())


def _config(**kw) -> TrainConfig:
    base = {"backbone": "tiny_resnet", "strategy": "full", "epochs": 2, "batch_size": 8, "image_size": 32}
    return TrainConfig(**{**base, **kw})


def test_consecutive_bad_steps_abort_and_keep_the_last_good_checkpoint(image_folder, tmp_path, monkeypatch):
    # Fine for the first epoch (4 steps), NaN from then on.
    monkeypatch.setattr(train_setup.nn, "CrossEntropyLoss", lambda **kw: _NanAt(set(range(5, 100))))
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="3 steps in a row"):
        runner.train_run(_config(max_bad_steps=3), from_folder(image_folder), run_dir=run)
    stem, meta, state, weights, _ = load_training_state(run / "last")
    assert (stem.name, meta["resume"]["epoch"], meta["resume"]["step"]) == ("last", 2, 0)  # end of epoch 1
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_isolated_bad_steps_are_counted_in_the_summary(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(train_setup.nn, "CrossEntropyLoss", lambda **kw: _NanAt({2, 6, 7}))
    run = tmp_path / "run"
    runner.train_run(_config(), from_folder(image_folder), run_dir=run)
    assert json.loads((run / "summary.json").read_text())["skipped_steps"] == 3
    assert [json.loads(line)["skipped_steps"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.fixture(scope="module")
def finished(image_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    runner.train_run(_config(), from_folder(image_folder), run_dir=run)
    return run


def test_resume_with_changed_settings_says_what_differs(finished, image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    capsys.readouterr()
    runner.train_run(_config(batch_size=4, lr=3e-4, epochs=3), from_folder(image_folder), run_dir=run, resume=True)
    err = " ".join(capsys.readouterr().err.split())
    assert "settings that differ" in err
    assert "batch_size: 8 -> 4" in err and "lr: None -> 0.0003" in err and "epochs: 2 -> 3" in err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_says_which_settings_it_keeps_and_keeps_them(finished, image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    size = json.loads((finished / "preprocessing.json").read_text())["image_size"]
    capsys.readouterr()
    runner.train_run(_config(image_size=size + 16), from_folder(image_folder), run_dir=run, resume=True)
    err = " ".join(capsys.readouterr().err.split())
    # Said as what runs: the checkpoint's preprocessing, not "image_size: 32 -> 48" and then 32.
    assert f"image_size: {size} -> " not in err
    assert (
        f"keeps the interrupted run's backbone, weights and preprocessing: image_size {size} (given: {size + 16})"
        in err
    )
    assert json.loads((run / "preprocessing.json").read_text())["image_size"] == size
    assert yaml.safe_load((run / "config.yaml").read_text())["image_size"] == size  # the saved config says so too


def test_resume_without_changes_gives_no_warning(finished, image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    capsys.readouterr()
    runner.train_run(_config(), from_folder(image_folder), run_dir=run, resume=True)
    assert "differ" not in capsys.readouterr().err


def test_resume_or_evaluate_with_other_classes_is_an_error(finished, image_folder, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(image_folder, other)
    (other / "red").rename(other / "yellow")
    with pytest.raises(CheckpointError, match="classes"):
        runner.train_run(_config(), from_folder(other), run_dir=finished, resume=True)
    with pytest.raises(ValueError, match="classes"):
        evaluate_run(finished, from_folder(other), out_dir=tmp_path / "eval")
