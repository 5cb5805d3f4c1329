import pytest

from transferkit import TrainConfig
from transferkit.config import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "half"}, "strategy 'half'"),
        ({"strategy": "partial"}, "needs freeze"),
        ({"optimizer": "adam"}, "optimizer 'adam'"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"head_lr_mult": -1.0}, "multipliers"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"crop_pct": 0.0}, "crop_pct"),
        ({"image_size": 8}, "image_size"),
        ({"strategy": "lp-ft", "epochs": 3, "lp_epochs": 3}, "lp_epochs"),
        ({"probe_views": -1}, "probe_views"),
    ],
)
def test_invalid_values_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_partial_accepts_stages_or_module_patterns():
    assert TrainConfig(strategy="partial", freeze=2).freeze == 2
    assert TrainConfig(strategy="partial", freeze_modules="conv_stem").freeze is None


def test_resolved_learning_rates():
    assert TrainConfig().resolved_lr() == 1e-4
    assert TrainConfig(optimizer="sgd").resolved_lr() == 5e-3
    assert TrainConfig(lr=0.3, optimizer="sgd").resolved_lr() == 0.3
    assert TrainConfig(strategy="lp-ft", epochs=10).resolved_lp_epochs() == 3
    assert TrainConfig(strategy="lp-ft", epochs=2).resolved_lp_epochs() == 1
    assert TrainConfig(strategy="lp-ft", epochs=10, lp_epochs=6).resolved_lp_epochs() == 6


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(
        backbone="tiny_effnet",
        strategy="partial",
        freeze=3,
        freeze_modules="conv_stem,bn1",
        epochs=4,
        lr=3e-4,
        optimizer="sgd",
        image_size=48,
        augment=False,
        patience=2,
        label_smoothing=0.1,
    )
    config.to_yaml(tmp_path / "config.yaml")
    loaded = TrainConfig.from_yaml(tmp_path / "config.yaml")
    assert loaded == config
    assert loaded is not config


def test_yaml_with_unknown_keys_or_not_a_mapping_is_rejected(tmp_path):
    (tmp_path / "typo.yaml").write_text("strategy: full\nepochz: 3\n")
    with pytest.raises(ConfigError, match="unknown config keys: epochz"):
        TrainConfig.from_yaml(tmp_path / "typo.yaml")
    (tmp_path / "list.yaml").write_text("- full\n- 3\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        TrainConfig.from_yaml(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("strategy: half\n")
    with pytest.raises(ConfigError, match="strategy 'half'"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")


def test_a_config_yaml_written_by_version_0_1_still_loads():
    """A run folder's config.yaml from before the fields were grouped and documented in place."""
    from pathlib import Path

    config = TrainConfig.from_yaml(Path(__file__).parent / "data" / "config-v0.1.yaml")
    assert (config.strategy, config.freeze, config.epochs, config.image_size) == ("partial", 2, 3, 48)
    assert config.time_budget == "5m" and config.to_dict() == TrainConfig(**config.to_dict()).to_dict()


def test_every_field_documents_itself_and_the_cli_help_reads_it():
    import argparse
    from dataclasses import fields

    from transferkit.cli._config_args import add_config_arguments
    from transferkit.config import field_help

    docs = field_help()
    assert set(docs) == {f.name for f in fields(TrainConfig)}
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["batch_size"].startswith(docs["batch_size"].replace("%", "%%"))
    assert helps["recipe"] and helps["lp_epochs"]


def test_a_run_saved_before_a_field_existed_resumes_with_the_value_it_trained_with(tmp_path):
    """probe_views (now 2), fold_bn (now on) and crop_scale (now 0.8) did not exist when older runs were saved: those
    ran with 0, off and 0.5."""
    import yaml

    from transferkit.config import DEFAULTS_BEFORE

    saved = TrainConfig(strategy="lp-ft").to_dict()
    for name in DEFAULTS_BEFORE:
        saved.pop(name)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved))
    resumed = TrainConfig.from_yaml(path, saved_run=True)
    assert (resumed.probe_views, resumed.fold_bn, resumed.crop_scale) == (0, False, 0.5)
    user = TrainConfig.from_yaml(path)  # a user's own file takes today's defaults
    assert (user.probe_views, user.fold_bn, user.crop_scale) == (2, True, 0.8)
    path.write_text(yaml.safe_dump(TrainConfig(strategy="lp-ft").to_dict()))  # a run saved today keeps its values
    assert TrainConfig.from_yaml(path, saved_run=True).probe_views == 2


def test_the_augment_policies_a_config_accepts_are_those_the_transforms_know():
    from transferkit.config import AUGMENT_POLICIES
    from transferkit.data.preprocessing import AUGMENT_POLICIES as KNOWN

    assert AUGMENT_POLICIES == KNOWN
