"""Build a backbone with a new head and its pretrained weights loaded tolerantly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
from torch import nn

from transferkit.data.preprocessing import INTERPOLATIONS, Preprocessing
from transferkit.models.loading import LoadReport, load_pretrained
from transferkit.models.registry import BackboneSpec, get_backbone
from transferkit.models.surgery import head_keys, replace_head
from transferkit.models.weights import FileWeights, WeightSource

__all__ = ["BuiltModel", "build_model", "preprocessing_config"]


@dataclass
class BuiltModel:
    """A model ready to fine-tune, with what is known about how it was made."""

    model: nn.Module
    spec: BackboneSpec
    report: LoadReport
    weights: WeightSource | None


def build_model(
    backbone: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights_file: str | Path | None = None,
    head_init: str = "xavier",
    drop_rate: float = 0.0,
    allow_partial_weights: bool = False,
    allow_unsafe_pickle: bool = False,
) -> BuiltModel:
    """Create `backbone`, cut off its classifier, attach a `num_classes` head and load pretrained weights.

    Args:
        backbone: A registered name, or a timm architecture (``timm:resnet50``).
        num_classes: Classes of the new head.
        pretrained: False builds the same architecture from random initialisation (the scratch baseline).
        weights_file: Load the backbone weights from this file instead of the registered source.
        head_init: ``xavier`` or ``trunc-normal``.
        drop_rate: Dropout before the new head.
        allow_partial_weights: Accept a checkpoint that covers too little of the backbone.
        allow_unsafe_pickle: Read a pickled weight file with full unpickling (trusted files only).

    Example:
        >>> built = build_model("tiny_resnet", num_classes=3)
        >>> built.model.get_classifier().out_features
        3
    """
    spec = get_backbone(backbone)
    model = timm.create_model(spec.architecture, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    replace_head(model, num_classes, head_init)
    weights: WeightSource | None = None
    if pretrained:
        weights = FileWeights(Path(weights_file), allow_unsafe_pickle) if weights_file else spec.weights
    if weights is None:
        source = "none: training from scratch" if not pretrained else f"{spec.name} has no pretrained weights"
        return BuiltModel(model, spec, LoadReport(source=source, head_keys=head_keys(model)), None)
    report = load_pretrained(
        model,
        weights.state_dict(),
        source=weights.describe(),
        head_keys=head_keys(model),
        allow_partial=allow_partial_weights,
    )
    return BuiltModel(model, spec, report, weights)


def preprocessing_config(
    model: nn.Module, spec: BackboneSpec, image_size: int | None = None, crop_pct: float | None = None
) -> Preprocessing:
    """Mean, std, interpolation and input size from the architecture's pretrained configuration.

    Args:
        image_size: Input size; default the backbone's registered or pretrained size.
        crop_pct: Evaluation centre-crop fraction; default the pretrained configuration's (ImageNet's
            0.875-style crop). Training runs pass their own (`TrainConfig.crop_pct`, 1.0: the whole image).
    """
    cfg = timm.data.resolve_data_config({}, model=model)
    size = image_size or spec.default_size or cfg["input_size"][-1]
    interpolation = cfg.get("interpolation", "bilinear")
    return Preprocessing(
        image_size=int(size),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        # An interpolation the transforms do not know has always meant bilinear.
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bilinear",
        crop_pct=float(crop_pct if crop_pct is not None else cfg.get("crop_pct", 0.875)),
    )
