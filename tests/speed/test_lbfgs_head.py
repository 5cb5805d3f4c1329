"""The L-BFGS head: it learns, its folded form equals standardise + linear, and runs log it like epochs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from transferkit import TrainConfig, from_folder, train_run
from transferkit.models import build_model
from transferkit.train.linear_head import LbfgsHead


def _blobs(n_per_class: int, seed: int, dim: int = 16, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs with very different scales per dimension (which standardisation must handle)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 4
    scale = torch.logspace(-2, 2, dim)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = (centres[y] + torch.randn(len(y), dim, generator=g)) * scale + 7.0
    return x, y


def test_learns_separable_features_and_generalises():
    x, y = _blobs(30, seed=0)
    head = LbfgsHead(x, y, num_classes=4, l2=1e-3)
    loss_before, _ = head.metrics(x, y)
    head.run(50)
    loss, acc = head.metrics(x, y)
    assert acc == 1.0 and loss < 0.2 * loss_before
    x_test, y_test = _blobs(50, seed=1)
    assert head.metrics(x_test, y_test)[1] >= 0.95  # chance is 0.25


def test_folded_head_equals_standardise_then_linear():
    x, y = _blobs(20, seed=2)
    head = LbfgsHead(x, y, num_classes=4, l2=1e-2)
    head.run(30)
    with torch.no_grad():
        expected = head.linear((x - x.mean(0)) / x.std(0, unbiased=False))
    plain = nn.Linear(16, 4)
    head.fold_into(plain)
    with torch.no_grad():
        got = plain(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    assert not torch.allclose(expected, torch.zeros_like(expected))


def test_constant_features_do_not_break_the_solve():
    x, y = _blobs(10, seed=3)
    x[:, 0] = 5.0  # zero variance
    head = LbfgsHead(x, y, num_classes=4)
    head.run(20)
    weight, bias = head.folded()
    assert torch.isfinite(weight).all() and torch.isfinite(bias).all()
    assert head.metrics(x, y)[1] >= 0.9


def test_the_solve_is_deterministic_and_continues_across_chunks():
    x, y = _blobs(15, seed=4)
    a, b = LbfgsHead(x, y, 4, l2=1e-2), LbfgsHead(x, y, 4, l2=1e-2)
    a.run(10)
    a.run(10)
    b.run(10)
    b.run(10)
    assert torch.equal(a.folded()[0], b.folded()[0])
    assert a.iterations > 10  # the second chunk went on from the first


def test_stronger_l2_gives_smaller_weights():
    x, y = _blobs(20, seed=5)
    weak, strong = LbfgsHead(x, y, 4, l2=1e-3), LbfgsHead(x, y, 4, l2=1.0)
    weak.run(50)
    strong.run(50)
    assert strong.linear.weight.norm() < 0.5 * weak.linear.weight.norm()


@pytest.mark.parametrize(("strategy", "phases"), [("linear-probe", ["probe"] * 3), ("lp-ft", ["probe", "finetune"])])
def test_runs_log_each_new_chunk_as_an_epoch_and_save_the_folded_head(tmp_path, image_folder, strategy, phases):
    config = TrainConfig(
        backbone="tiny_resnet",
        strategy=strategy,
        epochs=len(phases),
        lr=1e-3,
        batch_size=8,
        image_size=32,
        seed=0,
        head_solver="lbfgs",
        cache_dir=str(tmp_path / "cache"),
    )
    result = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    if strategy == "linear-probe":  # the phase ends once the solve has converged: no epoch repeats the last
        assert 1 <= len(rows) <= len(phases) and [r["phase"] for r in rows] == phases[: len(rows)]
        figures = [(r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"]) for r in rows]
        assert len(set(figures)) == len(figures)
    else:
        assert [r["phase"] for r in rows] == phases
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    probe = rows[0]
    assert probe["train_acc"] > 0.6 and probe["val_acc"] > 0.5  # chance is 1/3
    assert probe["train_loss"] < 1.0  # log(3) = 1.10 is the loss of the zero-initialised start
    assert result.best_val_acc == max(r["val_acc"] for r in rows)

    model = build_model("tiny_resnet", 3, pretrained=False).model
    weights = load_file(str(tmp_path / "run" / "best.safetensors"))
    assert set(weights) == set(model.state_dict())  # one ordinary model: no extra standardisation tensors


def test_a_converged_solve_ends_the_phase_and_says_so_once(tmp_path, image_folder, capsys):
    config = TrainConfig(
        backbone="tiny_resnet", strategy="linear-probe", epochs=10, batch_size=8, image_size=32, seed=0,
        head_solver="lbfgs", cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert 1 <= len(lines) < 10 and len({line.rsplit("|", 1)[0] for line in lines}) == len(lines)  # none repeated
    assert err.count("the L-BFGS solve converged") == 1
