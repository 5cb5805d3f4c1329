"""The strategy registry: one interface, duplicate names refused, a new strategy usable everywhere by its name."""

from __future__ import annotations

import pytest

from transferkit import TrainConfig, from_folder, train_run
from transferkit.cli import build_parser
from transferkit.config import ConfigError
from transferkit.strategies import (
    Freeze,
    Phase,
    Strategy,
    compare_defaults,
    get_strategy,
    register_strategy,
    strategy_names,
    unregister_strategy,
)


@pytest.fixture
def last_layer_strategy():
    """A strategy defined here, not in the package: the head and the backbone's last stage train."""

    @register_strategy
    class LastStage(Strategy):
        name = "last-stage"
        summary = "the last stage and the head"

        def phases(self, config):
            from transferkit.models import backbone_stages, build_model

            stages = len(backbone_stages(build_model(config.backbone, 2, pretrained=False).model))
            freeze = Freeze(stages=stages - 1)
            return [Phase(self.name, config.epochs, 1, freeze, config.resolved_lr(), config.head_lr_mult)]

    yield LastStage
    unregister_strategy("last-stage")


def test_builtin_strategies_are_registered_in_order():
    assert strategy_names()[:6] == ("baseline", "linear-probe", "lp-ft", "full", "partial", "scratch")
    assert compare_defaults() == ("baseline", "linear-probe", "lp-ft", "full", "scratch")
    assert get_strategy("baseline").classical and not get_strategy("full").classical
    assert not get_strategy("scratch").pretrained and get_strategy("partial").uses_depth


def test_a_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_strategy
        class Again(Strategy):
            name = "full"

    assert type(get_strategy("full")).__name__ == "Full"


def test_phases_add_up_to_the_epochs_and_keep_their_rates():
    config = TrainConfig(strategy="lp-ft", epochs=9, lr=1e-3)
    probe, finetune = get_strategy("lp-ft").phases(config)
    assert (probe.epochs, finetune.first_epoch, finetune.last_epoch) == (3, 4, 9)
    assert probe.probe and probe.freeze.backbone and probe.lr == pytest.approx(1e-2)
    assert not finetune.probe and finetune.lr == 1e-3 and finetune.head_lr_mult == 1.0
    (scratch,) = get_strategy("scratch").phases(TrainConfig(strategy="scratch", lr=1e-3))
    assert scratch.lr == pytest.approx(1e-2) and scratch.head_lr_mult == 1.0


def test_a_strategy_defined_in_a_test_shows_in_help_and_trains(last_layer_strategy, image_folder, tmp_path):
    strategy_option = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions if a.dest == "strategy"
    )
    assert "last-stage" in strategy_option.choices
    config = TrainConfig(backbone="tiny_resnet", strategy="last-stage", epochs=2, batch_size=8, image_size=32)
    result = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    assert len(result.history) == 2 and {r.phase for r in result.history} == {"last-stage"}
    from transferkit.models import backbone_stages, build_model

    model = build_model("tiny_resnet", 3, pretrained=False).model
    last_and_head = backbone_stages(model)[-1].num_params + sum(p.numel() for p in model.get_classifier().parameters())
    assert result.frozen_params > 0 and result.trainable_params == last_and_head  # only the last stage and the head
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_an_unregistered_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="choose auto or one of baseline, linear-probe"):
        TrainConfig(strategy="last-stage")
