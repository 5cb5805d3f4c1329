"""What trains and what stays frozen: stages and module-name patterns (strategies decide which, see `strategies`)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from timm.models import group_parameters
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferkit.models.surgery import head_keys

__all__ = ["FreezePlan", "Stage", "apply_freeze", "backbone_stages", "plan_freeze", "set_train_mode"]


@dataclass(frozen=True)
class Stage:
    """A group of backbone layers, as the architecture's `group_matcher` defines them."""

    index: int
    name: str
    param_names: tuple[str, ...]
    num_params: int


@dataclass
class FreezePlan:
    """The outcome of a freezing decision.

    Attributes:
        description: What was frozen, in words.
        frozen: Names of frozen parameters.
        trainable_params: Count of trainable parameters.
        frozen_params: Count of frozen parameters.
    """

    description: str
    frozen: list[str] = field(default_factory=list)
    trainable_params: int = 0
    frozen_params: int = 0


def backbone_stages(model: nn.Module) -> list[Stage]:
    """The backbone's stages in forward order (stem first), the classifier excluded."""
    head = set(head_keys(model))
    params = dict(model.named_parameters())
    groups = group_parameters(model, model.group_matcher(coarse=True))
    stages = []
    for names in groups.values():
        names = tuple(n for n in names if n not in head)
        if not names:
            continue
        stages.append(Stage(len(stages), _common_name(names), names, sum(params[n].numel() for n in names)))
    return stages


def plan_freeze(
    model: nn.Module,
    *,
    backbone: bool = False,
    stages: int | None = None,
    modules: str | None = None,
    from_scratch: bool = False,
) -> FreezePlan:
    """Decide which parameters to freeze (nothing is changed yet); the new head always trains.

    Args:
        model: A model with its new head.
        backbone: Freeze the whole backbone.
        stages: Freeze this many leading stages (`backbone_stages`).
        modules: Comma-separated module-name patterns (fnmatch, e.g. ``conv_stem,bn1,blocks.0*``) to freeze
            in addition; a pattern matches a module and everything under it.
        from_scratch: The weights are random (only changes the description).
    """
    head = set(head_keys(model))
    all_names = [n for n, _ in model.named_parameters()]
    frozen: set[str] = set()
    what = []
    if backbone:
        frozen |= {n for n in all_names if n not in head}
        what.append("whole backbone frozen (BatchNorm statistics too)")
    elif stages is not None:
        found = backbone_stages(model)
        if not 0 <= stages <= len(found):
            raise ValueError(f"--freeze {stages}: this backbone has {len(found)} stages (0..{len(found)})")
        for stage in found[:stages]:
            frozen |= set(stage.param_names)
        what.append(f"first {stages} of {len(found)} stages frozen")
    if modules:
        patterns = [p.strip() for p in modules.split(",") if p.strip()]
        matched = _match_modules(model, patterns)
        if not matched:
            raise ValueError(f"--freeze-modules {modules!r} matched no parameter; see `backbones --detail`")
        frozen |= matched - head
        what.append(f"modules matching {','.join(patterns)} frozen")
    if not what:
        what.append("all layers train" + (" from random initialisation" if from_scratch else ""))
    params = dict(model.named_parameters())
    n_frozen = sum(params[n].numel() for n in frozen)
    n_total = sum(p.numel() for p in params.values())
    return FreezePlan("; ".join(what), sorted(frozen), n_total - n_frozen, n_frozen)


def apply_freeze(model: nn.Module, plan: FreezePlan) -> None:
    """Set `requires_grad` from the plan (everything not frozen trains)."""
    frozen = set(plan.frozen)
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)


def set_train_mode(model: nn.Module, keep_bn_stats: bool = False) -> None:
    """Training mode, except BatchNorm layers whose parameters are frozen keep their running statistics.

    A frozen BatchNorm that kept updating its statistics would drift away from the weights it was
    trained with, which is the classic way a "frozen" backbone silently changes.

    Args:
        keep_bn_stats: Every BatchNorm layer, trainable or not, normalises with its (pretrained) running
            statistics and leaves them unchanged, as in inference. On a small dataset, statistics of a few
            training batches are noisy and shift the features the pretrained layers expect.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            params = list(module.parameters(recurse=False))
            if keep_bn_stats or (params and not any(p.requires_grad for p in params)):
                module.eval()


def _match_modules(model: nn.Module, patterns: list[str]) -> set[str]:
    names = set()
    for mod_name, module in model.named_modules():
        if mod_name and any(fnmatch.fnmatchcase(mod_name, p) for p in patterns):
            names |= {f"{mod_name}.{n}" for n, _ in module.named_parameters()}
    return names


def _common_name(names: tuple[str, ...]) -> str:
    """A readable label for a stage: its top-level modules, with the block index (``blocks.3``, ``layer2``)."""
    labels = []
    for name in names:
        segs = name.split(".")
        label = segs[0]
        if len(segs) > 2 and segs[1].isdigit() and not segs[0][-1].isdigit():
            label = f"{segs[0]}.{segs[1]}"
        labels.append(label)
    return ",".join(dict.fromkeys(labels))
