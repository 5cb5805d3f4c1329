import pytest
import timm
import torch
from torch import nn

from transferkit.train._depthwise import KernelChoices, fast_depthwise


def _grads(module: nn.Module, x: torch.Tensor, enabled: bool, choices=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    with fast_depthwise(module, enabled, choices):
        out = module(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return x.grad, [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("use_taps", [True, False])
@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "size", "bias"),
    [(8, 3, 1, 1, 5, False), (6, 5, 2, 2, 7, True), (4, 3, 2, 0, 6, False), (12, 5, 1, 2, 2, False)],
)
def test_gradients_match_pytorch(use_taps, channels, kernel, stride, padding, size, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, kernel, stride, padding, groups=channels, bias=bias)
    x = torch.randn(3, channels, size, size)
    want_x, want_params = _grads(conv, x, enabled=False)
    choices = KernelChoices(None)
    _grads(conv, x, enabled=True, choices=choices)  # the first call times both ways and records the choice
    assert len(choices.used) == 1
    key = next(iter(choices.used))
    choices.used[key] = "taps" if use_taps else "native"
    got_x, got_params = _grads(conv, x, enabled=True, choices=choices)
    torch.testing.assert_close(got_x, want_x, rtol=1e-5, atol=1e-5)
    for got, want in zip(got_params, want_params, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_timm_same_padding_model_trains_identically_and_is_restored():
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3).train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 48, 48).contiguous(memory_format=torch.channels_last)
    want_x, want = _grads(model, x, enabled=False)
    got_x, got = _grads(model, x, enabled=True)
    torch.testing.assert_close(got_x, want_x, rtol=1e-4, atol=1e-5)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_only_depthwise_layers_that_train_are_affected():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, groups=4))
    with fast_depthwise(model) as n:
        assert n == 1
        assert "forward" in model[0].__dict__ and "forward" not in model[1].__dict__
        model[0].weight.requires_grad_(False)
        with torch.no_grad():
            out = model[0](torch.randn(1, 4, 5, 5))
        assert out.grad_fn is None
    with fast_depthwise(model, enabled=False) as n:
        assert n == 0


def test_a_shape_is_timed_once_per_machine_and_the_record_comes_first(tmp_path):
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(2, 8, 4, 4)
    first = KernelChoices.for_machine(tmp_path)
    _grads(conv, x, enabled=True, choices=first)
    (key, choice), other = next(iter(first.used.items())), {"taps": "native", "native": "taps"}
    # The machine's file is read back by a later run (no timing: its choice is the file's, even if edited).
    first.path.write_text(f'{{"{key}": "{other[choice]}"}}')
    later = KernelChoices.for_machine(tmp_path)
    _grads(conv, x, enabled=True, choices=later)
    assert later.used == {key: other[choice]}
    # A resumed run's record wins over the machine's file.
    resumed = KernelChoices.for_machine(tmp_path, recorded={key: choice})
    _grads(conv, x, enabled=True, choices=resumed)
    assert resumed.used == {key: choice}
