import pytest
import torch

from transferkit import TrainConfig
from transferkit.models import apply_freeze, build_model, head_keys
from transferkit.strategies import get_strategy
from transferkit.train import build_optimizer, build_scheduler, param_groups


def _model(strategy="full"):
    model = build_model("tiny_effnet", 3).model
    apply_freeze(model, get_strategy(strategy).phases(TrainConfig(strategy=strategy))[0].freeze.plan(model))
    return model


def test_param_groups_split_head_backbone_and_no_decay():
    model = _model()
    head = head_keys(model)
    groups = param_groups(model, head, base_lr=1e-3, head_lr_mult=10, weight_decay=0.05)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "backbone-no-decay", "head", "head-no-decay"}
    assert by_name["head"]["lr"] == pytest.approx(1e-2)
    assert by_name["head-no-decay"]["lr"] == pytest.approx(1e-2)
    assert by_name["backbone"]["lr"] == pytest.approx(1e-3)
    assert by_name["backbone-no-decay"]["lr"] == pytest.approx(1e-3)
    for group in groups:
        if group["name"].endswith("no-decay"):
            assert group["weight_decay"] == 0.0
            assert all(p.ndim == 1 for p in group["params"])
        else:
            assert group["weight_decay"] == 0.05
            assert all(p.ndim > 1 for p in group["params"])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    params = dict(model.named_parameters())
    assert {id(params[k]) for k in head} == {id(p) for g in groups if g["name"].startswith("head") for p in g["params"]}


def test_param_groups_leave_out_frozen_parameters():
    model = _model("linear-probe")
    groups = param_groups(model, head_keys(model), base_lr=1e-3, head_lr_mult=10, weight_decay=0.05)
    assert sorted(g["name"] for g in groups) == ["head", "head-no-decay"]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in model.get_classifier().parameters()
    )


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_optimizer_keeps_each_groups_lr(name):
    model = _model()
    groups = param_groups(model, head_keys(model), base_lr=1e-3, head_lr_mult=10, weight_decay=0.01)
    optimizer = build_optimizer(groups, TrainConfig(optimizer=name))
    assert type(optimizer).__name__.lower() == name
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([1e-3, 1e-2])
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.01}


def test_scheduler_warms_up_then_decays_to_zero_by_cosine():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [param], "lr": 1.0}, {"params": [], "lr": 10.0}], lr=1.0)
    total, warmup = 40, 8
    scheduler = build_scheduler(optimizer, total_steps=total, warmup_steps=warmup)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    warm, decay = lrs[: warmup + 1], lrs[warmup:]
    assert all(a < b for a, b in zip(warm, warm[1:], strict=False))  # strictly rising warm-up
    assert lrs[0] < 0.2 and max(lrs) == pytest.approx(1.0)
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))  # strictly falling afterwards
    midpoint = warmup + (total - warmup) // 2
    assert lrs[midpoint] == pytest.approx(0.5, abs=0.02)  # cosine, not linear-to-zero-early or step
    assert lrs[-1] < 0.01 and optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    # Every group follows the same shape, each from its own base learning rate.
    assert optimizer.param_groups[1]["lr"] == pytest.approx(10 * optimizer.param_groups[0]["lr"])


def test_scheduler_caps_a_warmup_longer_than_the_run_so_the_peak_is_reached():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, total_steps=3, warmup_steps=10)
    lrs = []
    for _ in range(3):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_layer_decay_slows_each_stage_before_the_last_by_the_factor():
    from transferkit.models.freezing import backbone_stages

    model = _model()
    stages = backbone_stages(model)
    groups = param_groups(model, head_keys(model), base_lr=1e-3, head_lr_mult=10, weight_decay=0.05, layer_decay=0.5)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates["head"] == pytest.approx(1e-2)
    for stage in stages:
        assert rates[f"backbone.{stage.index}"] == pytest.approx(1e-3 * 0.5 ** (len(stages) - stage.index))
    params = dict(model.named_parameters())
    for group in groups:  # each stage's parameters are in its own groups, decay split as before
        if group["name"].startswith("backbone."):
            index = int(group["name"].split(".")[1].split("-")[0])
            names = set(stages[index].param_names)
            assert {id(p) for p in group["params"]} <= {id(params[n]) for n in names}
    assert sum(len(g["params"]) for g in groups) == len(params)


def test_layer_decay_of_one_keeps_the_plain_groups():
    model = _model()
    plain = param_groups(model, head_keys(model), base_lr=1e-3, head_lr_mult=10, weight_decay=0.05)
    same = param_groups(model, head_keys(model), base_lr=1e-3, head_lr_mult=10, weight_decay=0.05, layer_decay=1.0)
    assert [(g["name"], g["lr"], len(g["params"])) for g in plain] == [
        (g["name"], g["lr"], len(g["params"])) for g in same
    ]
