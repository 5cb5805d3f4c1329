"""The weight average (EMA) and the pull toward the pretrained weights (L2-SP): their arithmetic and their seams."""

import pytest
import torch
from torch import nn

from transferkit import TrainConfig
from transferkit.models import build_model, head_keys
from transferkit.train import param_groups
from transferkit.train._step_extras import AnchorPull, WeightEMA, step_extras
from transferkit.train.optim import build_optimizer


def _step(net, opt):
    opt.zero_grad()
    net(torch.ones(4, 2)).pow(2).sum().backward()
    opt.step()


def test_ema_follows_the_weights_with_a_warming_decay():
    torch.manual_seed(0)
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ema = WeightEMA(net, opt, decay=0.9)
    expected = [p.detach().clone() for p in net.parameters()]
    for t in range(1, 30):
        _step(net, opt)
        decay = min(0.9, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, net.parameters(), strict=True)]
        for mine, want in zip(ema.module.parameters(), expected, strict=True):
            torch.testing.assert_close(mine, want)
    assert ema.updates == 29
    assert not any(p.requires_grad for p in ema.module.parameters())
    ema.close()
    _step(net, opt)
    assert ema.updates == 29  # the hook is gone


def test_ema_state_round_trips():
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ema = WeightEMA(net, opt, decay=0.5)
    _step(net, opt)
    other = WeightEMA(nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    torch.testing.assert_close(other.module.weight, ema.module.weight, rtol=0, atol=0)


def test_anchor_pull_moves_weights_toward_their_start_at_the_groups_rate():
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [net.weight], "lr": 0.25}, {"params": [net.bias], "lr": 0.25}])
    start = net.weight.detach().clone()
    pull = AnchorPull(opt, [net.weight], strength=2.0)  # lr x strength = 0.5: half the way back per step
    with torch.no_grad():
        net.weight.add_(1.0)
    bias = net.bias.detach().clone()
    opt.step()  # no gradients: SGD leaves the weights, the pull acts alone
    torch.testing.assert_close(net.weight, start + 0.5)
    torch.testing.assert_close(net.bias, bias)  # not anchored
    pull.close()
    opt.step()
    torch.testing.assert_close(net.weight, start + 0.5)


def test_step_extras_anchor_only_the_decayed_pretrained_groups_and_drop_their_decay():
    model = build_model("tiny_effnet", 3).model
    groups = param_groups(model, head_keys(model), base_lr=1e-3, head_lr_mult=10, weight_decay=0.05)
    opt = build_optimizer(groups, TrainConfig())
    extras = step_extras(model, opt, ema=0.0, l2_sp=3.0)
    assert set(extras) == {"l2_sp"}
    decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert decay == {"backbone": 0.0, "backbone-no-decay": 0.0, "head": 0.05, "head-no-decay": 0.0}
    backbone = next(g for g in opt.param_groups if g["name"] == "backbone")
    assert len(extras["l2_sp"].anchors) == len(backbone["params"])
    assert step_extras(model, opt, ema=0.0, l2_sp=0.0) == {}


@pytest.mark.parametrize("field,value", [("ema", 1.0), ("ema", -0.1), ("l2_sp", -1.0), ("layer_decay", 0.0)])
def test_config_refuses_out_of_range_extras(field, value):
    from transferkit.config import ConfigError

    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_an_ema_run_validates_and_keeps_the_average(tmp_path, image_folder):
    """The best checkpoint is the average: with one epoch it equals the average the training state saved, and it
    differs from the weights that took the steps."""
    from safetensors.torch import load_file

    from transferkit import from_folder, train_run

    config = TrainConfig(
        backbone="tiny_resnet", strategy="full", epochs=1, lr=1e-3, batch_size=8, image_size=32, ema=0.9
    )
    train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    best = load_file(tmp_path / "run" / "best.safetensors")
    live = load_file(tmp_path / "run" / "last.safetensors")
    state = torch.load(tmp_path / "run" / "last.state.pt", weights_only=True)
    average = state["extras"]["ema"]["weights"]
    assert state["extras"]["ema"]["updates"] > 0
    weights = [k for k in best if k.endswith("weight") and best[k].ndim > 1]
    assert all(torch.equal(best[k], average[k]) for k in weights)
    assert any(not torch.equal(best[k], live[k]) for k in weights)
