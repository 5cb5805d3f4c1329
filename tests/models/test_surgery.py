import math

import pytest
import timm
import torch

from transferkit.models import build_model, head_keys, replace_head


@pytest.mark.parametrize(("backbone", "keys"), [("tiny_resnet", ["fc.weight", "fc.bias"]), ("tiny_effnet", None)])
def test_new_head_has_n_outputs(backbone, keys):
    model = build_model(backbone, 7).model
    head = model.get_classifier()
    assert head.out_features == 7
    assert head_keys(model) == (keys or ["classifier.weight", "classifier.bias"])
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def _head(init: str, classes: int = 100) -> torch.nn.Linear:
    torch.manual_seed(0)
    model = replace_head(timm.create_model("test_resnet", num_classes=1000), classes, init)
    return model.get_classifier()


def test_xavier_uniform_init_scales_with_fan_in_and_out():
    head = _head("xavier")
    fan_in, fan_out = head.in_features, head.out_features
    bound = math.sqrt(6 / (fan_in + fan_out))
    w = head.weight.detach()
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.95 * bound  # uniform: the extremes are reached
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.count_nonzero(head.bias) == 0


def test_trunc_normal_init_has_std_002_truncated_at_two_sigma():
    head = _head("trunc-normal")
    w = head.weight.detach()
    assert w.abs().max() <= 0.04
    # A normal of std 0.02 cut at +-2 sigma has std 0.02 * 0.880 = 0.0176.
    assert w.std().item() == pytest.approx(0.0176, rel=0.05)
    assert w.mean().abs().item() < 0.001
    assert torch.count_nonzero(head.bias) == 0
    # Xavier on the same head is several times wider: the two inits differ as documented.
    assert _head("xavier").weight.std() > 3 * w.std()


def test_build_model_passes_head_init_and_rejects_unknown():
    head = build_model("tiny_effnet", 50, head_init="trunc-normal").model.get_classifier()
    assert head.weight.abs().max() <= 0.04
    with pytest.raises(ValueError, match="unknown head init"):
        build_model("tiny_effnet", 5, head_init="kaiming")
