import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from transferkit.models import WeightFileError, WeightLoadError, build_model, read_state_dict


def _timm_checkpoint(arch: str = "test_resnet", seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict as timm saves it: the same architecture with its 1000-class ImageNet head."""
    torch.manual_seed(seed)
    model = timm.create_model(arch)
    # Non-default running statistics, so a loaded buffer is distinguishable from a fresh one.
    for name, tensor in model.state_dict().items():
        if "running" in name:
            tensor.uniform_(0.5, 1.5)
    return model.state_dict()


def _assert_backbone_equals(model: torch.nn.Module, state: dict[str, torch.Tensor], head: list[str]) -> None:
    target = model.state_dict()
    for key, tensor in target.items():
        if key not in head:
            assert torch.equal(tensor, state[key]), key


def test_timm_checkpoint_loads_by_name_and_drops_old_head(tmp_path):
    state = _timm_checkpoint()
    torch.save(state, tmp_path / "timm.pth")
    built = build_model("tiny_resnet", 3, weights_file=tmp_path / "timm.pth")
    report = built.report
    assert report.rule == "name"
    assert not report.verified_shapes
    assert sorted(report.dropped_head) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatched == []
    assert len(report.loaded) == report.backbone_total == len(state) - 2
    assert report.backbone_fraction == 1.0
    _assert_backbone_equals(built.model, state, report.head_keys)
    assert built.model.get_classifier().out_features == 3


def test_torchvision_resnet18_loads_into_timm_resnet18(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    for name, tensor in state.items():
        if "running" in name:
            tensor.uniform_(0.5, 1.5)
    torch.save(state, tmp_path / "resnet18-torchvision.pth")
    built = build_model("timm:resnet18", 4, weights_file=tmp_path / "resnet18-torchvision.pth")
    report = built.report
    assert report.rule == "name"
    backbone_keys = [k for k in state if not k.startswith("fc.")]
    assert sorted(t for t, _ in report.loaded) == sorted(backbone_keys)
    assert all(t == s for t, s in report.loaded)
    assert sorted(report.dropped_head) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatched == []
    _assert_backbone_equals(built.model, state, report.head_keys)
    assert built.weights.kind == "file"


def test_wrapped_checkpoint_with_module_prefix_unwraps(tmp_path):
    state = _timm_checkpoint()
    wrapped = {"epoch": 7, "optimizer": {"lr": 0.1}, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(wrapped, tmp_path / "ddp.pth")
    assert set(read_state_dict(tmp_path / "ddp.pth")) == set(state)
    built = build_model("tiny_resnet", 3, weights_file=tmp_path / "ddp.pth")
    assert built.report.rule == "name"
    assert built.report.backbone_fraction == 1.0
    _assert_backbone_equals(built.model, state, built.report.head_keys)


def test_port_with_renamed_keys_loads_by_verified_shape_order(tmp_path):
    state = _timm_checkpoint()
    port = {f"net.{i:03d}_{k.replace('.', '_')}": v for i, (k, v) in enumerate(state.items())}
    torch.save(port, tmp_path / "port.pth")
    built = build_model("tiny_resnet", 3, weights_file=tmp_path / "port.pth")
    report = built.report
    assert report.rule == "shape-order"
    assert report.verified_shapes
    assert report.backbone_fraction == 1.0 and report.missing == []
    renamed = dict(zip(state, port, strict=True))
    assert sorted(report.dropped_head) == sorted([renamed["fc.weight"], renamed["fc.bias"]])
    assert all(renamed[t] == s for t, s in report.loaded)
    _assert_backbone_equals(built.model, state, report.head_keys)


def test_port_with_one_wrong_shape_is_refused_not_guessed(tmp_path):
    state = _timm_checkpoint()
    port = {f"net.{i:03d}": v for i, v in enumerate(state.values())}
    key = next(iter(k for k in port if port[k].ndim == 4))
    port[key] = torch.zeros(1, 1, 1, 1)
    torch.save(port, tmp_path / "port.pth")
    with pytest.raises(WeightLoadError, match="0/"):
        build_model("tiny_resnet", 3, weights_file=tmp_path / "port.pth")


def test_one_tensor_of_wrong_shape_is_reported(tmp_path):
    state = _timm_checkpoint()
    bad_key = "layer4.0.conv2.weight"
    good_shape = tuple(state[bad_key].shape)
    state[bad_key] = torch.ones(good_shape[0], good_shape[1], 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    built = build_model("tiny_resnet", 3, weights_file=tmp_path / "bad.pth")
    report = built.report
    assert report.shape_mismatched == [[bad_key, [good_shape[0], good_shape[1], 1, 1], list(good_shape)]]
    assert report.missing == []  # mismatched keys are listed once, not twice
    assert len(report.loaded) == report.backbone_total - 1
    assert built.model.state_dict()[bad_key].shape == good_shape
    assert "shape mismatch layer4.0.conv2.weight" in report.summary()


def test_different_architecture_raises_naming_keys_and_loads_with_allow_partial(tmp_path):
    torch.save(_timm_checkpoint("test_efficientnet"), tmp_path / "effnet.pth")
    with pytest.raises(WeightLoadError) as info:
        build_model("tiny_resnet", 3, weights_file=tmp_path / "effnet.pth")
    message = str(info.value)
    assert "effnet.pth" in message and "--allow-partial-weights" in message
    built = build_model("tiny_resnet", 3, weights_file=tmp_path / "effnet.pth", allow_partial_weights=True)
    report = built.report
    assert report.backbone_fraction < 0.5
    assert len(report.missing) > 10 and len(report.unexpected) > 10
    assert all(key in message for key in report.missing[:3])
    assert sorted(report.dropped_head) == ["classifier.bias", "classifier.weight"]


def test_safetensors_file_loads(tmp_path):
    state = _timm_checkpoint("test_efficientnet")
    save_file(state, str(tmp_path / "effnet.safetensors"))
    built = build_model("tiny_effnet", 5, weights_file=tmp_path / "effnet.safetensors")
    assert built.report.rule == "name"
    assert built.report.backbone_fraction == 1.0
    assert sorted(built.report.dropped_head) == ["classifier.bias", "classifier.weight"]
    _assert_backbone_equals(built.model, state, built.report.head_keys)


def test_damaged_and_missing_files_are_weight_file_errors(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    for name in ("junk.safetensors", "junk.pth", "absent.pth"):
        with pytest.raises(WeightFileError, match=name):
            read_state_dict(tmp_path / name)
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(WeightFileError, match="holds no tensors"):
        read_state_dict(tmp_path / "empty.pth")


class _Payload:
    """Unpickling this runs code: it writes the canary file."""

    def __init__(self, canary):
        self.canary = str(canary)

    def __reduce__(self):
        return exec, (f"open({self.canary!r}, 'w').write('pwned')",)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    canary = tmp_path / "canary.txt"
    state = _timm_checkpoint()
    state["payload"] = _Payload(canary)
    torch.save(state, tmp_path / "evil.pth")
    assert not canary.exists()
    with pytest.raises(WeightFileError, match="refused"):
        build_model("tiny_resnet", 3, weights_file=tmp_path / "evil.pth")
    assert not canary.exists()
    # The payload is live: reading the same file with full unpickling does run it.
    read_state_dict(tmp_path / "evil.pth", allow_unsafe_pickle=True)
    assert canary.read_text() == "pwned"
