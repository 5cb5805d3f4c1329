"""`Preprocessing`: its views equal the torchvision pipelines the dict-based code built, its JSON form round-trips,
files written by earlier versions load, and invalid values are refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torchvision import transforms as T

from transferkit.data import Preprocessing, build_transforms
from transferkit.models import build_model, preprocessing_config

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BICUBIC = T.InterpolationMode.BICUBIC


@pytest.fixture
def photo() -> Image.Image:
    """A non-square RGB image with detail at every scale, so that any change of resize or crop shows."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:61, 0:83]
    pixels = np.stack([xx * 3, yy * 4, (xx * yy) % 256], axis=-1) + rng.integers(0, 40, (61, 83, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


PRE = Preprocessing(image_size=32, mean=MEAN, std=STD, interpolation="bicubic", crop_pct=0.875)


def _expected_eval() -> T.Compose:
    """The evaluation pipeline as the dict-based `build_transforms` composed it for PRE."""
    return T.Compose([T.Resize(37, interpolation=BICUBIC), T.CenterCrop(32), T.ToTensor(), T.Normalize(MEAN, STD)])


def test_the_evaluation_view_is_the_former_pipeline(photo):
    assert PRE.eval_resize == 37  # round(32 / 0.875)
    assert torch.equal(PRE.eval_transform()(photo), _expected_eval()(photo))
    assert torch.equal(build_transforms(PRE, train=False)(photo), _expected_eval()(photo))
    assert torch.equal(PRE.train_transform(augment=False)(photo), _expected_eval()(photo))
    geometry = PRE.geometry()(photo)
    assert geometry.size == (32, 32)
    assert torch.equal(T.Normalize(MEAN, STD)(T.ToTensor()(geometry)), _expected_eval()(photo))
    square = PRE.geometry(crop=False)(photo)  # what the decoded-image cache stores: the crop's surrounding square
    want = T.Compose([T.Resize(37, interpolation=BICUBIC), T.CenterCrop(37)])(photo)
    assert np.array_equal(np.asarray(square), np.asarray(want))


@pytest.mark.parametrize("augmentation", ["resized-crop", "pad-crop"])
def test_training_views_are_the_former_pipelines(photo, augmentation):
    if augmentation == "pad-crop":
        crop = [T.Resize(37, interpolation=BICUBIC), T.CenterCrop(32), T.RandomCrop(32, padding=4)]
    else:
        crop = [T.RandomResizedCrop(32, scale=(0.8, 1.0), interpolation=BICUBIC)]  # today's default crop_scale
    expected = T.Compose([*crop, T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    for seed in range(5):  # the same random draws in the same order give the same crops and flips
        torch.manual_seed(seed)
        got = PRE.train_transform(augmentation)(photo)
        torch.manual_seed(seed)
        assert torch.equal(got, expected(photo))


def test_normalize_does_the_former_batch_arithmetic(photo):
    pixels = torch.from_numpy(np.stack([np.asarray(PRE.geometry()(photo))] * 2)).permute(0, 3, 1, 2)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    # uint8 pixels: one shift and one scale in pixel units, as the whole-batch path did.
    assert torch.equal(PRE.normalize(pixels), (pixels.float() - mean * 255) / (std * 255))
    # floats in [0, 1]: ToTensor + Normalize's arithmetic, equal to the evaluation transform bit for bit.
    scaled = pixels.float().div(255)
    assert torch.equal(PRE.normalize(scaled), scaled.clone().sub_(mean).div_(std))
    assert torch.equal(PRE.normalize(scaled)[0], PRE.eval_transform()(photo))
    grey = pixels[:, :1]
    assert PRE.normalize(grey).shape == (2, 3, 32, 32)  # one grey channel broadcasts to three


def test_the_json_form_round_trips_with_the_former_keys():
    values = PRE.to_dict()
    assert list(values) == ["image_size", "mean", "std", "interpolation", "crop_pct"]
    assert values["mean"] == list(MEAN) and isinstance(values["std"], list)
    assert Preprocessing.from_dict(json.loads(json.dumps(values))) == PRE
    assert Preprocessing.from_dict({**values, "classes": ["a"], "backbone": "x"}) == PRE  # an export sidecar


def test_what_preprocessing_config_gives_is_what_it_gave():
    built = build_model("tiny_resnet", 2, pretrained=False)
    pre = preprocessing_config(built.model, built.spec, 48, crop_pct=1.0)
    cfg = timm.data.resolve_data_config({}, model=built.model)
    assert isinstance(pre, Preprocessing)
    assert pre.to_dict() == {  # the dict it returned before
        "image_size": 48,
        "mean": [float(x) for x in cfg["mean"]],
        "std": [float(x) for x in cfg["std"]],
        "interpolation": cfg.get("interpolation", "bilinear"),
        "crop_pct": 1.0,
    }
    assert preprocessing_config(built.model, built.spec).crop_pct == float(cfg.get("crop_pct", 0.875))
    assert pre.with_size(64) == dataclasses.replace(pre, image_size=64)


def test_files_from_earlier_versions_load():
    old = {"image_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}  # no crop_pct, no interpolation
    pre = Preprocessing.from_dict(old)
    assert (pre.crop_pct, pre.interpolation, pre.eval_resize) == (1.0, "bilinear", 224)
    assert Preprocessing.from_dict({**old, "interpolation": "bicubic"}).interpolation == "bicubic"
    assert Preprocessing.from_dict({**old, "crop_pct": 0.875}).eval_resize == 256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 32.5}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"mean": (0.5, float("nan"), 0.5)}, "mean"),
        ({"std": (0.5, 0.0, 0.5)}, "std must be positive"),
        ({"std": "abc"}, "std"),
        ({"interpolation": "lanczos"}, "interpolation 'lanczos'"),
        ({"crop_pct": 0}, "crop_pct"),
        ({"crop_pct": float("inf")}, "crop_pct"),
    ],
)
def test_invalid_values_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(PRE, **change)


def test_a_dict_without_the_required_keys_is_refused():
    with pytest.raises(ValueError, match="preprocessing lacks mean, std"):
        Preprocessing.from_dict({"image_size": 32})
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRE.image_size = 64  # type: ignore[misc]


def test_crop_scale_flip_and_policy_shape_the_training_view(photo):
    """crop_scale is the crop's smallest area, flip can be off, a policy runs after the crop (seeded alike)."""
    expected = T.Compose(
        [T.RandomResizedCrop(32, scale=(0.5, 1.0), interpolation=BICUBIC), T.TrivialAugmentWide(interpolation=BICUBIC),
         T.ToTensor(), T.Normalize(MEAN, STD)]
    )  # fmt: skip
    for seed in range(5):
        torch.manual_seed(seed)
        got = PRE.train_transform(crop_scale=0.5, flip=False, policy="trivial")(photo)
        torch.manual_seed(seed)
        assert torch.equal(got, expected(photo))
    with pytest.raises(ValueError, match="crop_scale"):
        PRE.train_transform(crop_scale=0.0)
    with pytest.raises(ValueError, match="policy"):
        PRE.train_transform(policy="autoaugment")
