"""Class imbalance: weighted cross-entropy, the class-balanced sampler, checkpoint selection, the figures."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from transferkit import TrainConfig, from_folder, train_run
from transferkit._figures import class_figures
from transferkit.advise import Measurements, decide
from transferkit.config import ConfigError
from transferkit.evaluate.metrics import classification_metrics
from transferkit.models import build_model
from transferkit.train._order import EpochBatchSampler
from transferkit.train._tracker import Tracker
from transferkit.train.imbalance import balanced_class_weights
from transferkit.train.loop import EpochResult
from transferkit.train.rundir import RunDir
from transferkit.train.setup import step_settings


def _settings(class_weights: str, labels: list[int]):
    """The run's StepSettings for training labels `labels` (two classes), built as train_run builds them."""
    config = TrainConfig(backbone="tiny_resnet", strategy="full", class_weights=class_weights, label_smoothing=0.0)
    session = SimpleNamespace(device=torch.device("cpu"), dist=None, amp=None)
    run_model = SimpleNamespace(built=SimpleNamespace(spec=SimpleNamespace(weights=None)))
    data = SimpleNamespace(train=SimpleNamespace(labels=np.array(labels)), classes=["a", "b"])
    strategy = SimpleNamespace(pretrained=False)
    return step_settings(config, strategy, session, run_model, data)


def test_weighted_loss_equals_a_hand_computation():
    # Training labels 0, 0, 0, 1: weights n / (k n_c) = 4 / (2 * 3) and 4 / (2 * 1).
    loss_fn = _settings("balanced", [0, 0, 0, 1]).loss_fn
    logits, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    l0, l1 = math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))  # -log softmax of the true class
    w0, w1 = 2 / 3, 2.0
    expected = (w0 * l0 + w1 * l1) / (w0 + w1)  # PyTorch's weighted mean divides by the weights' sum
    assert loss_fn(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert _settings("none", [0, 0, 0, 1]).loss_fn(logits, targets).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_balanced_weights_give_every_class_the_same_total():
    labels = np.array([0] * 40 + [1] * 8 + [2] * 2)
    weights = balanced_class_weights(labels, 4)
    totals = [weights[c].item() * (labels == c).sum() for c in range(3)]
    assert totals == pytest.approx([50 / 3] * 3) and weights[3].item() == 0.0  # class 3 has no images


def test_balanced_sampler_draws_every_class_about_equally():
    labels = torch.tensor([0] * 200 + [1] * 40 + [2] * 5)
    sampler = EpochBatchSampler(len(labels), 16, shuffle=True, seed=3, labels=labels)
    counts = torch.zeros(3)
    for epoch in range(1, 11):
        sampler.set_position(epoch)
        drawn = torch.tensor([i for batch in sampler for i in batch])
        assert len(drawn) == len(labels)  # an epoch is as long as with plain shuffling
        counts += torch.bincount(labels[drawn], minlength=3)
    shares = counts / counts.sum()
    assert shares.tolist() == pytest.approx([1 / 3] * 3, abs=0.03)  # plain shuffling: 0.82, 0.16, 0.02
    assert len(set(drawn.tolist()) & set(range(240, 245))) == 5  # the rare class's images all come up


def test_balanced_sampler_resumes_the_same_sequence():
    labels = torch.tensor([0] * 30 + [1] * 6)
    full = EpochBatchSampler(36, 5, shuffle=True, seed=7, labels=labels, sample_seeds=True)
    full.set_position(4)
    whole = list(full)
    resumed = EpochBatchSampler(36, 5, shuffle=True, seed=7, labels=labels, sample_seeds=True)
    resumed.set_position(4, step=3)  # a run interrupted after 3 steps of epoch 4
    assert list(resumed) == whole[3:]
    other = EpochBatchSampler(36, 5, shuffle=True, seed=8, labels=labels)
    other.set_position(4)
    assert [[i for i, _ in b] for b in whole] != list(other)


def test_plain_shuffle_is_unchanged():
    """Without --sampler balanced the order is the seeded permutation it always was (same seed, same weights)."""
    sampler = EpochBatchSampler(10, 4, shuffle=True, seed=2)
    sampler.set_position(3)
    generator = torch.Generator().manual_seed(2 * 1_000_003 + 3)
    assert [i for batch in sampler for i in batch] == torch.randperm(10, generator=generator).tolist()


def test_figures_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=300, p=[0.7, 0.2, 0.08, 0.02])
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    balanced, f1 = class_figures(y, pred, 5)  # class 4: neither in the data nor predicted
    assert balanced == pytest.approx(balanced_accuracy_score(y, pred))
    assert f1 == pytest.approx(f1_score(y, pred, average="macro"))
    metrics = classification_metrics(y, pred, list("abcde"))
    assert metrics.balanced_accuracy == pytest.approx(balanced) and metrics.macro_f1 == pytest.approx(f1)
    assert metrics.to_dict()["balanced_accuracy"] == pytest.approx(balanced)
    assert metrics.worst_recall == pytest.approx(min(metrics.recall[:4]))


def _epoch(epoch: int, acc: float, f1: float) -> EpochResult:
    return EpochResult(epoch, "full", 1.0, 0.5, 0.8, acc, 1e-3, 0.1, 0, f1, f1)


@pytest.mark.parametrize(("select_by", "best"), [("accuracy", 1), ("macro-f1", 2), ("balanced-accuracy", 2)])
def test_select_by_picks_the_best_checkpoint(tmp_path, select_by, best):
    model = build_model("tiny_resnet", 3, pretrained=False).model
    tracker = Tracker(RunDir(tmp_path / "run"), model, {}, patience=1, data={}, select_by=select_by)
    tracker(_epoch(1, 0.90, 0.40))  # high accuracy from the common class alone
    tracker(_epoch(2, 0.85, 0.70))
    assert tracker.best_epoch == best
    assert json.loads((tmp_path / "run" / "best.json").read_text())["epoch"] == best
    assert tracker.stopped == (best == 1)  # patience counts epochs without a better selection figure


def test_config_refuses_unknown_choices():
    for field, value in (("class_weights", "inverse"), ("sampler", "weighted"), ("select_by", "f1")):
        with pytest.raises(ConfigError, match=field):
            TrainConfig(**{field: value})


def _measurements(imbalance: float) -> Measurements:
    return Measurements(
        "efficientnet_lite0", True, n_images=245, n_classes=3, min_per_class=5, median_per_class=40,
        imbalance=imbalance, image_size=48, probe_acc=0.8, probe_gain=0.7, stage_logme=[-0.2, 0.1],
        stage_names=["a", "b"], logme=0.1,
    )  # fmt: skip


def test_advisor_acts_on_large_imbalance():
    advice = decide(_measurements(40.0))
    assert (advice.class_weights, advice.select_by) == ("balanced", "macro-f1")
    assert "--class-weights balanced" in advice.explain()
    applied = advice.apply(TrainConfig())
    assert (applied.class_weights, applied.select_by) == ("balanced", "macro-f1")
    assert advice.apply(TrainConfig(select_by="balanced-accuracy")).select_by == "balanced-accuracy"  # the user's
    even = decide(_measurements(2.0))
    assert (even.class_weights, even.select_by) == ("none", "accuracy")


@pytest.mark.parametrize("strategy", ["full", "linear-probe"])
def test_a_run_with_every_imbalance_option(tmp_path, image_folder, strategy):
    config = TrainConfig(
        backbone="tiny_resnet", strategy=strategy, epochs=2, lr=1e-3, batch_size=8, image_size=32,
        class_weights="balanced", sampler="balanced", select_by="macro-f1",
    )  # fmt: skip
    result = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    rows = RunDir(result.run_dir).metrics()
    assert all(0 <= row["val_macro_f1"] <= 1 and 0 <= row["val_balanced_acc"] <= 1 for row in rows)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["select_by"] == "macro-f1"
    assert summary["best_val_score"] == max(row["val_macro_f1"] for row in rows)


def test_select_by_loss_keeps_the_lowest_validation_loss_even_above_one(tmp_path):
    """A tiny validation set: one more image right at a much higher loss is not kept over the calmer epoch."""
    model = build_model("tiny_resnet", 3, pretrained=False).model
    tracker = Tracker(RunDir(tmp_path / "run"), model, {}, patience=None, data={}, select_by="loss")
    rows = [(1, 1.15, 0.55), (2, 1.60, 0.60), (3, 1.52, 0.55)]  # (epoch, val loss, val acc)
    for epoch, loss, acc in rows:
        tracker(EpochResult(epoch, "full", 1.0, 0.5, loss, acc, 1e-3, 0.1, 0, acc, acc))
    assert tracker.best_epoch == 1 and tracker.best_score == pytest.approx(-1.15)
    assert json.loads((tmp_path / "run" / "best.json").read_text())["epoch"] == 1
