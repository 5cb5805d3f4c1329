from contextlib import contextmanager

import pytest
import timm
import torch
from torch import nn

from transferkit.models.freezing import set_train_mode
from transferkit.train._depthwise import KernelChoices, fast_depthwise
from transferkit.train._fold_bn import folded_batchnorm

# Folding moves the normalisation into the convolution's weights and bias: the same function, other rounding.
# Gradients are compared relative to each tensor's largest entry (float32 sums over a batch of 8 at 32 px).
RTOL = 1e-5
GRAD_RTOL = 1e-4


def _lite0() -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=5)
    for module in model.modules():  # statistics as after pretraining, not the initial 0 and 1
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return model.to(memory_format=torch.channels_last)


def _step(model: nn.Module, x: torch.Tensor, fold: bool, fast: bool, choices=None):
    model.zero_grad(set_to_none=True)
    set_train_mode(model, keep_bn_stats=True)
    x = x.clone().requires_grad_()
    with fast_depthwise(model, fast, choices), folded_batchnorm(model, fold, choices if fast else None) as folding:
        out = model(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        pairs = len(folding.patched) // 2 if folding is not None else 0
    return out, x.grad, [p.grad.clone() for p in model.parameters()], pairs


def _assert_relative(got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    scale = want.abs().max().clamp_min(1e-12)
    assert ((got - want).abs().max() / scale).item() <= rtol


@pytest.mark.parametrize("fast", [False, True])
def test_folded_lite0_matches_pytorch_within_tolerance(fast):
    model = _lite0()
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    want_out, want_x, want, _ = _step(model, x, fold=False, fast=False)
    got_out, got_x, got, pairs = _step(model, x, fold=True, fast=fast, choices=KernelChoices(None))
    assert pairs == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # every BatchNorm of Lite0
    _assert_relative(got_out, want_out, RTOL)
    _assert_relative(got_x, want_x, GRAD_RTOL)
    for g, w in zip(got, want, strict=True):
        _assert_relative(g, w, GRAD_RTOL)
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_the_same_input_gives_the_same_bits_twice_and_the_state_dict_is_untouched():
    model = _lite0()
    keys = list(model.state_dict())
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    choices = KernelChoices(None)  # one machine's kernel choices, as a run keeps them
    first, second = _step(model, x, True, True, choices), _step(model, x, True, True, choices)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[2], second[2], strict=True))
    with folded_batchnorm(model):
        model.eval()(x)
        assert list(model.state_dict()) == keys


def test_batchnorm_with_batch_statistics_is_left_as_it_is():
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    want = _lite0().train()(x)
    model = _lite0().train()
    with folded_batchnorm(model) as folding:
        got = model(x)
        assert folding.patched  # folded for eval-mode calls; a training-mode call takes the ordinary path
    assert torch.equal(got, want)


class _Reused(nn.Module):
    """A convolution whose output also bypasses its BatchNorm: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.bn.running_var.fill_(4.0)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_a_model_whose_output_folding_would_change_is_not_folded():
    model = _Reused().eval()
    x = torch.randn(2, 3, 8, 8)
    want = model(x)
    with folded_batchnorm(model) as folding:
        got = model(x)
        assert folding.patched == []
    assert torch.equal(got, want)


def test_norms_that_do_not_follow_a_convolution_stay_unfolded():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    model.eval()
    with folded_batchnorm(model) as folding:
        model(torch.randn(2, 3, 4, 4))
        assert [type(m).__name__ for m in folding.patched] == ["Conv2d", "BatchNorm2d"]
        assert folding.patched[1] is model[4]


@pytest.mark.parametrize("fold_bn", [True, False])
def test_a_run_from_pretrained_weights_folds_every_batchnorm_unless_told_not_to(tmp_path, image_folder, fold_bn):
    from transferkit import TrainConfig, from_folder, train_run
    from transferkit.train import _phases

    source = timm.create_model("test_efficientnet", num_classes=0, pretrained=False)
    weights = tmp_path / "pretrained.pth"
    torch.save(source.state_dict(), weights)
    folded = []
    real = _phases.folded_batchnorm

    @contextmanager
    def spy(*args, **kwargs):
        with real(*args, **kwargs) as folding:
            yield folding
            folded.append(len(folding.patched) // 2 if folding is not None else 0)

    config = TrainConfig(
        backbone="tiny_effnet", strategy="full", epochs=1, batch_size=8, image_size=32, weights=str(weights),
        fold_bn=fold_bn,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_phases, "folded_batchnorm", spy)
        train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in source.modules())
    assert folded and all(n == (norms if fold_bn else 0) for n in folded)
