"""Tolerant, reported loading of pretrained weights into a model with a new head.

Three rules map a source checkpoint onto the target model, tried in this order:

1. ``name``: keys match the target's names (timm checkpoints, torchvision ResNets, our own runs).
2. ``rename``: the target's names after an explicit rename table (prefix tables for known ports).
3. ``shape-order``: the source holds the same tensors in the same order under other names (ports of the
   same network). Used only when the counts agree and *every* shape matches; anything else is refused,
   because a guess that is off by one tensor would silently load garbage.

The head never loads: keys that map onto the target's classifier are reported as ``dropped_head``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ["LoadReport", "WeightLoadError", "load_pretrained", "RENAME_TABLES"]

# Rename tables for checkpoints whose names differ from timm's by fixed patterns.
# Each entry: (pattern, replacement) applied with re.sub in order.
RENAME_TABLES: dict[str, list[tuple[str, str]]] = {
    # torchvision and Keras-style ports often prefix the trunk.
    "backbone-prefix": [(r"^backbone\.", ""), (r"^encoder\.", ""), (r"^features\.", "")],
}


class WeightLoadError(RuntimeError):
    """The backbone's pretrained weights did not load."""


@dataclass
class LoadReport:
    """What happened to every tensor when pretrained weights were loaded.

    Attributes:
        source: Where the weights came from.
        rule: The mapping rule used (``name``, ``rename:<table>``, ``shape-order``) or ``none``.
        loaded: ``[target_key, source_key]`` pairs that were copied.
        dropped_head: Source keys that belonged to the old classifier.
        shape_mismatched: ``[key, source_shape, target_shape]`` for tensors skipped for their shape.
        missing: Target backbone keys that received nothing.
        unexpected: Source keys that matched nothing.
        head_keys: Target keys of the new, freshly initialised head.
    """

    source: str
    rule: str = "none"
    loaded: list[list[str]] = field(default_factory=list)
    dropped_head: list[str] = field(default_factory=list)
    shape_mismatched: list[list] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    head_keys: list[str] = field(default_factory=list)
    verified_shapes: bool = False

    @property
    def backbone_total(self) -> int:
        return len(self.loaded) + len(self.missing) + len(self.shape_mismatched)

    @property
    def backbone_fraction(self) -> float:
        return len(self.loaded) / self.backbone_total if self.backbone_total else 0.0

    def summary(self) -> str:
        """A few lines for the console."""
        if self.rule == "none":
            return f"weights: {self.source} (random initialisation)"
        lines = [
            f"weights: {self.source}",
            f"  mapping rule: {self.rule}" + (" (every shape verified)" if self.verified_shapes else ""),
            f"  loaded {len(self.loaded)}/{self.backbone_total} backbone tensors"
            f" ({100 * self.backbone_fraction:.1f}%), dropped old head: {len(self.dropped_head)},"
            f" shape-mismatched: {len(self.shape_mismatched)}, missing: {len(self.missing)},"
            f" unexpected: {len(self.unexpected)}",
            f"  new head: {', '.join(self.head_keys)}",
        ]
        for key, src, dst in self.shape_mismatched[:5]:
            lines.append(f"  shape mismatch {key}: checkpoint {src} vs model {dst}")
        if self.missing:
            lines.append(f"  missing: {', '.join(self.missing[:5])}" + (" ..." if len(self.missing) > 5 else ""))
        if self.unexpected:
            more = " ..." if len(self.unexpected) > 5 else ""
            lines.append(f"  unexpected: {', '.join(self.unexpected[:5])}{more}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["backbone_fraction"] = self.backbone_fraction
        return data


def load_pretrained(
    model: nn.Module,
    source_state: dict[str, torch.Tensor],
    *,
    source: str,
    head_keys: list[str],
    min_backbone_fraction: float = 0.95,
    allow_partial: bool = False,
) -> LoadReport:
    """Load `source_state` into `model`, skipping the head and anything that does not fit.

    Args:
        model: The target model, already carrying its new head.
        source_state: Tensors from the checkpoint (already unwrapped).
        source: Description of where the weights came from, for the report.
        head_keys: The target's classifier keys (never loaded).
        min_backbone_fraction: Below this fraction of backbone tensors loaded, loading fails.
        allow_partial: Accept a poorly matching checkpoint instead of failing.

    Returns:
        The load report.

    Raises:
        WeightLoadError: When too few backbone tensors loaded and `allow_partial` is false.
    """
    target = model.state_dict()
    head = set(head_keys)
    report = LoadReport(source=source, head_keys=list(head_keys))

    mapping, rule = _map_keys(source_state, target, head)
    report.rule = rule
    report.verified_shapes = rule == "shape-order"

    to_load: dict[str, torch.Tensor] = {}
    used_sources = set()
    for tkey, skey in mapping.items():
        used_sources.add(skey)
        if tkey in head:
            report.dropped_head.append(skey)
            continue
        s_shape, t_shape = tuple(source_state[skey].shape), tuple(target[tkey].shape)
        if s_shape != t_shape:
            report.shape_mismatched.append([tkey, list(s_shape), list(t_shape)])
            continue
        to_load[tkey] = source_state[skey].to(dtype=target[tkey].dtype)
        report.loaded.append([tkey, skey])
    # Source keys that look like a classifier (same suffix as a head key) but matched nothing count as head.
    for skey in source_state:
        if skey in used_sources:
            continue
        if _looks_like_head(skey, head_keys):
            report.dropped_head.append(skey)
        else:
            report.unexpected.append(skey)
    mismatched = {k for k, _, _ in report.shape_mismatched}
    report.missing = [k for k in target if k not in head and k not in to_load and k not in mismatched]

    model.load_state_dict(to_load, strict=False)
    if report.backbone_fraction < min_backbone_fraction and not allow_partial:
        names = ", ".join(report.missing[:8] + [k for k, _, _ in report.shape_mismatched[:8]])
        raise WeightLoadError(
            f"only {len(report.loaded)}/{report.backbone_total} backbone tensors of {source} fit this model "
            f"({100 * report.backbone_fraction:.1f}%, rule {rule}). Not loaded: {names}. "
            "Check that the checkpoint belongs to this architecture, or pass --allow-partial-weights."
        )
    return report


def _map_keys(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], head: set[str]
) -> tuple[dict[str, str], str]:
    """Pick the rule that maps the most backbone tensors; returns target_key -> source_key."""
    backbone_targets = [k for k in target if k not in head]
    candidates: list[tuple[dict[str, str], str]] = [({k: k for k in target if k in source}, "name")]
    for table_name, table in RENAME_TABLES.items():
        renamed = {_rename(k, table): k for k in source}
        candidates.append(({k: renamed[k] for k in target if k in renamed}, f"rename:{table_name}"))
    order = _order_mapping(source, target, head)
    if order is not None:
        candidates.append((order, "shape-order"))

    def score(m: dict[str, str]) -> int:
        return sum(1 for k in backbone_targets if k in m and source[m[k]].shape == target[k].shape)

    best, rule = max(candidates, key=lambda c: score(c[0]))
    if score(best) == 0:
        return {}, "none-matched"
    return best, rule


def _order_mapping(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], head: set[str]
) -> dict[str, str] | None:
    """Pair tensors by position when the source has exactly the target's layout under other names."""
    s_keys, t_keys = list(source), list(target)
    if len(s_keys) == len(t_keys):
        pairs = list(zip(t_keys, s_keys, strict=True))
    elif len(s_keys) == len(t_keys) - len(head):
        # A checkpoint saved without its classifier.
        pairs = list(zip([k for k in t_keys if k not in head], s_keys, strict=True))
    else:
        return None
    for tkey, skey in pairs:
        # The head may differ in class count; everything else must agree exactly.
        if tkey not in head and tuple(source[skey].shape) != tuple(target[tkey].shape):
            return None
    return dict(pairs)


def _rename(key: str, table: list[tuple[str, str]]) -> str:
    for pattern, replacement in table:
        key = re.sub(pattern, replacement, key)
    return key


def _looks_like_head(key: str, head_keys: list[str]) -> bool:
    if any(key == h or key.endswith("." + h) for h in head_keys):
        return True
    return bool(re.search(r"(^|\.)(fc|classifier|head|_fc|last_linear)\.(weight|bias)$", key))
