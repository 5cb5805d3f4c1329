import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from transferkit import TrainConfig
from transferkit.config import ConfigError
from transferkit.models import apply_freeze, backbone_stages, build_model, head_keys, plan_freeze, set_train_mode
from transferkit.strategies import UnknownStrategyError, get_strategy


def _model(backbone="tiny_resnet", classes=3):
    torch.manual_seed(0)
    return build_model(backbone, classes).model


def _plan(model, strategy, freeze_stages=None, freeze_modules=None):
    """What the strategy's first phase freezes, as a run with these settings would decide it."""
    config = TrainConfig(backbone="tiny_resnet", strategy=strategy, freeze=freeze_stages, freeze_modules=freeze_modules)
    return get_strategy(strategy).phases(config)[0].freeze.plan(model)


def _freeze(model, strategy, **kwargs):
    plan = _plan(model, strategy, **kwargs)
    apply_freeze(model, plan)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(plan.frozen)
    assert plan.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert plan.frozen_params == sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


@pytest.mark.parametrize("backbone", ["tiny_resnet", "tiny_effnet"])
def test_stages_cover_the_backbone_in_order_without_the_head(backbone):
    model = _model(backbone)
    stages = backbone_stages(model)
    assert len(stages) >= 4
    names = [n for s in stages for n in s.param_names]
    head = head_keys(model)
    assert sorted(names) == sorted(n for n, _ in model.named_parameters() if n not in head)
    order = [n for n, _ in model.named_parameters()]
    assert names == [n for n in order if n in set(names)]  # forward order, stem first
    assert [s.index for s in stages] == list(range(len(stages)))


@pytest.mark.parametrize("strategy", ["linear-probe", "lp-ft"])
def test_linear_probe_trains_only_the_head(strategy):
    model = _model()
    trainable, frozen = _freeze(model, strategy)
    assert trainable == set(head_keys(model))
    assert len(frozen) == len(list(model.parameters())) - 2


@pytest.mark.parametrize("k", [0, 2, 5])
def test_partial_freezes_exactly_the_first_k_stages(k):
    model = _model()
    stages = backbone_stages(model)
    assert len(stages) == 5
    trainable, frozen = _freeze(model, "partial", freeze_stages=k)
    assert frozen == {n for s in stages[:k] for n in s.param_names}
    assert trainable == {n for s in stages[k:] for n in s.param_names} | set(head_keys(model))


def test_partial_rejects_a_stage_count_the_backbone_does_not_have():
    model = _model()
    with pytest.raises(ValueError, match="has 5 stages"):
        _plan(model, "partial", freeze_stages=6)
    with pytest.raises(ConfigError, match="needs freeze"):
        _plan(model, "partial")


@pytest.mark.parametrize("strategy", ["full", "scratch"])
def test_full_and_scratch_train_everything(strategy):
    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)  # apply_freeze must turn every parameter back on
    trainable, frozen = _freeze(model, strategy)
    assert frozen == set()
    assert trainable == {n for n, _ in model.named_parameters()}


def test_freeze_modules_patterns_freeze_matching_modules_only():
    model = _model("tiny_effnet")
    trainable, frozen = _freeze(model, "full", freeze_modules="conv_stem, bn1,blocks.0*")
    expected = {n for n, _ in model.named_parameters() if n.split(".")[0] in ("conv_stem", "bn1")}
    expected |= {n for n, _ in model.named_parameters() if n.startswith("blocks.0.")}
    assert frozen == expected
    assert any(n.startswith("blocks.1.") for n in trainable)
    assert "bn2.weight" in trainable  # `bn1` is a whole-name pattern, not a prefix or substring


def test_freeze_modules_never_freezes_the_head_and_must_match_something():
    model = _model()
    trainable, _ = _freeze(model, "full", freeze_modules="fc,layer4")
    assert set(head_keys(model)) <= trainable
    assert not any(n.startswith("layer4.") for n in trainable)
    with pytest.raises(ValueError, match="matched no parameter"):
        plan_freeze(model, modules="no_such_module*")


def test_unknown_strategy_is_an_error():
    with pytest.raises(UnknownStrategyError, match="unknown strategy 'half'; choose one of baseline, linear-probe"):
        get_strategy("half")
    with pytest.raises(ConfigError, match="strategy 'half'"):
        TrainConfig(strategy="half")


def test_frozen_batchnorm_keeps_eval_mode_and_running_stats_through_a_training_step():
    model = _model()
    stages = backbone_stages(model)
    _freeze(model, "partial", freeze_stages=2)
    frozen_prefixes = {n.rsplit(".", 1)[0] for s in stages[:2] for n in s.param_names}
    bns = {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
    frozen_bns = {n for n in bns if n in frozen_prefixes}
    assert frozen_bns and len(frozen_bns) < len(bns)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}

    set_train_mode(model)
    for name, bn in bns.items():
        assert bn.training == (name not in frozen_bns), name
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32) * 3 + 1), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()

    after = model.state_dict()
    for name in bns:
        changed = not torch.equal(before[f"{name}.running_mean"], after[f"{name}.running_mean"])
        assert changed == (name not in frozen_bns), name
        assert torch.equal(before[f"{name}.running_var"], after[f"{name}.running_var"]) == (name in frozen_bns)
    for name in frozen_bns:
        for key in ("weight", "bias"):
            assert getattr(bns[name], key).grad is None


def test_keep_bn_stats_puts_every_batchnorm_in_eval_mode_while_it_still_learns():
    model = _model()
    _freeze(model, "full")
    bns = {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    gamma = {n: m.weight.detach().clone() for n, m in bns.items()}

    set_train_mode(model, keep_bn_stats=True)
    assert model.training and not any(bn.training for bn in bns.values())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32) * 3 + 1), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()

    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # statistics kept
    assert any(not torch.equal(gamma[n], bns[n].weight) for n in bns)  # affine parameters still train
