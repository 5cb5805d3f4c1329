"""The decision table: constructed measurements in each cell of size x similarity give that cell's plan."""

from __future__ import annotations

import pytest

from transferkit import TrainConfig
from transferkit.advise import THRESHOLDS, Measurements, decide, partial_depth

RISING = [-0.2, -0.15, -0.1, 0.0, 0.1, 0.2]  # LogME improves stage by stage: the final features are best
PEAKED = [-0.6, -0.4, 0.05, 0.02, -0.1, -0.25]  # best at stage 2, then 0.3 lower at the final features


def _measured(per_class: int, gain: float, stages: list[float], pretrained: bool = True) -> Measurements:
    classes = 10
    return Measurements(
        "efficientnet_lite0",
        pretrained,
        n_images=per_class * classes,
        n_classes=classes,
        min_per_class=per_class,
        median_per_class=per_class,
        imbalance=1.0,
        sample_images=min(1000, per_class * classes),
        image_size=96,
        logme=stages[-1],
        probe_acc=0.1 + 0.9 * gain,
        probe_gain=gain,
        stage_names=[f"s{i}" for i in range(len(stages))],
        stage_logme=stages,
    )


@pytest.mark.parametrize(
    ("per_class", "gain", "stages", "regime", "strategy"),
    [
        (10, 0.8, RISING, "small-similar", "linear-probe"),
        (10, 0.2, RISING, "small-different", "partial"),  # the probe is weak
        (10, 0.8, PEAKED, "small-different", "partial"),  # the last stages make the features worse
        (500, 0.8, RISING, "large-similar", "lp-ft"),
        (500, 0.2, PEAKED, "large-different", "full"),
    ],
)
def test_each_cell_of_the_table(per_class, gain, stages, regime, strategy):
    advice = decide(_measured(per_class, gain, stages))
    assert (advice.regime, advice.strategy) == (regime, strategy)
    assert advice.freeze is None or strategy == "partial"


def test_size_threshold_is_the_smallest_class():
    at = THRESHOLDS["small_per_class"]
    assert decide(_measured(at - 1, 0.8, RISING)).size == "small"
    assert decide(_measured(at, 0.8, RISING)).size == "large"


def test_partial_freezes_up_to_the_best_stage():
    advice = decide(_measured(10, 0.8, PEAKED))
    assert advice.freeze == 3  # stages 0, 1, 2 (the peak) frozen; 3, 4, 5 retrain
    assert partial_depth(RISING) == len(RISING) - 1  # the last stage always trains
    assert partial_depth([0.5, 0.1, 0.0]) == 1  # at least one stage stays frozen


def test_without_pretrained_weights_train_from_scratch():
    advice = decide(_measured(10, 0.9, RISING, pretrained=False))
    assert (advice.regime, advice.strategy) == ("no-pretrained-weights", "scratch")


def test_pretrained_layers_get_a_tenth_of_the_scratch_rate():
    advice = decide(_measured(500, 0.8, RISING))
    assert advice.lr * advice.scratch_lr_mult == pytest.approx(10 * advice.lr)
    assert advice.head_lr_mult == 10
    assert decide(_measured(500, 0.8, RISING), optimizer="sgd").lr > advice.lr  # scaled from SGD's default


def test_more_data_needs_fewer_epochs():
    few, many = decide(_measured(50, 0.2, PEAKED)), decide(_measured(2000, 0.2, PEAKED))
    assert few.epochs > many.epochs >= 3


def test_explanation_names_the_numbers_and_thresholds():
    text = decide(_measured(10, 0.2, PEAKED)).explain()
    assert "partial --freeze 3" in text
    assert "10 images" in text and str(THRESHOLDS["small_per_class"]) in text
    assert "0.20" in text and str(THRESHOLDS["similar_probe_gain"]) in text  # probe gain vs threshold
    assert "s2" in text and "0.300 lower" in text  # where LogME peaks and how far it falls


def test_apply_fills_defaults_and_keeps_what_the_user_set():
    advice = decide(_measured(10, 0.2, PEAKED))
    config = advice.apply(TrainConfig(strategy="auto", epochs=4))
    assert (config.strategy, config.freeze, config.epochs) == ("partial", 3, 4)
    assert config.lr == advice.lr and config.image_size == 96
    assert advice.apply(TrainConfig(strategy="auto", lr=1e-2)).lr == 1e-2
    # freeze_modules given: partial freezes by module name, not by the advised stage count
    assert advice.apply(TrainConfig(strategy="auto", freeze_modules="conv_stem")).freeze is None


def test_to_dict_is_json_ready():
    import json

    data = json.loads(json.dumps(decide(_measured(10, 0.8, RISING)).to_dict()))
    assert data["strategy"] == "linear-probe" and data["measurements"]["probe_gain"] == 0.8
    assert "features" not in data["measurements"]
