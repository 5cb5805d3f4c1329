"""Backbones, weight sources, head surgery, tolerant loading and freezing.

Names are imported on first use (see `transferkit._lazy`): listing the registry needs neither torch
nor timm.
"""

from typing import TYPE_CHECKING

from transferkit._lazy import lazy_names

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "transferkit.models._state_dict": ["WeightFileError", "read_state_dict", "unwrap_state_dict"],
        "transferkit.models.build": ["BuiltModel", "build_model", "preprocessing_config"],
        "transferkit.models.freezing": [
            "FreezePlan",
            "Stage",
            "apply_freeze",
            "backbone_stages",
            "plan_freeze",
            "set_train_mode",
        ],
        "transferkit.models.loading": ["LoadReport", "WeightLoadError", "load_pretrained"],
        "transferkit.models.registry": [
            "BackboneFacts",
            "BackboneSpec",
            "UnknownBackboneError",
            "get_backbone",
            "list_backbones",
        ],
        "transferkit.models.surgery": ["head_keys", "replace_head"],
        "transferkit.models.weights": ["FileWeights", "HubWeights", "PackageWeights", "WeightSource"],
    },
)

if TYPE_CHECKING:
    from transferkit.models._state_dict import WeightFileError, read_state_dict, unwrap_state_dict
    from transferkit.models.build import BuiltModel, build_model, preprocessing_config
    from transferkit.models.freezing import (
        FreezePlan,
        Stage,
        apply_freeze,
        backbone_stages,
        plan_freeze,
        set_train_mode,
    )
    from transferkit.models.loading import LoadReport, WeightLoadError, load_pretrained
    from transferkit.models.registry import (
        BackboneFacts,
        BackboneSpec,
        UnknownBackboneError,
        get_backbone,
        list_backbones,
    )
    from transferkit.models.surgery import head_keys, replace_head
    from transferkit.models.weights import FileWeights, HubWeights, PackageWeights, WeightSource

__all__ = [
    "BackboneFacts",
    "BackboneSpec",
    "BuiltModel",
    "FileWeights",
    "FreezePlan",
    "HubWeights",
    "LoadReport",
    "PackageWeights",
    "Stage",
    "UnknownBackboneError",
    "WeightFileError",
    "WeightLoadError",
    "WeightSource",
    "apply_freeze",
    "backbone_stages",
    "build_model",
    "get_backbone",
    "head_keys",
    "list_backbones",
    "load_pretrained",
    "plan_freeze",
    "preprocessing_config",
    "read_state_dict",
    "replace_head",
    "set_train_mode",
    "unwrap_state_dict",
]
