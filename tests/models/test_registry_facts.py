"""The facts `transferkit backbones` lists without building a model agree with the built model."""

from __future__ import annotations

import pytest

from transferkit.models import build_model, list_backbones, preprocessing_config


@pytest.mark.parametrize("spec", [s for s in list_backbones() if s.facts], ids=lambda s: s.name)
def test_listed_facts_match_the_built_backbone(spec):
    model = build_model(spec.name, 1000, pretrained=False).model
    pre = preprocessing_config(model, spec)
    assert sum(p.numel() for p in model.parameters()) == spec.facts.params
    assert pre.image_size == spec.facts.image_size
    assert tuple(pre.mean) == pytest.approx(spec.facts.mean)
    assert tuple(pre.std) == pytest.approx(spec.facts.std)


def test_every_registered_backbone_has_facts():
    assert [s.name for s in list_backbones() if s.facts is None] == []
