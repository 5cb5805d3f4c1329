import json
import math
import re

import pytest

from transferkit import TrainConfig, from_folder, train_run
from transferkit.config import LARGE_DATA, RECIPES, ConfigError, parse_duration
from transferkit.train._budget import EpochCost, plan_epochs


def test_recipe_fills_only_the_fields_left_unset():
    small = TrainConfig(strategy="full").with_recipe(100)
    assert small.batch_size == RECIPES["small"]["batch_size"] and small.augmentation == "resized-crop"
    large = TrainConfig(strategy="full").with_recipe(LARGE_DATA)
    assert (large.batch_size, large.label_smoothing, large.augmentation) == (128, 0.1, "pad-crop")
    mine = TrainConfig(strategy="full", batch_size=64, label_smoothing=0.0).with_recipe(LARGE_DATA)
    assert (mine.batch_size, mine.label_smoothing, mine.augmentation) == (64, 0.0, "pad-crop")
    # A linear probe trains no augmentation-hungry backbone: it keeps the small recipe on large data.
    assert TrainConfig(strategy="linear-probe").with_recipe(LARGE_DATA).batch_size == 32
    assert TrainConfig(strategy="linear-probe", recipe="large").with_recipe(10).batch_size == 128


def test_bad_recipe_augmentation_and_budget_values_are_refused():
    with pytest.raises(ConfigError, match="recipe"):
        TrainConfig(recipe="huge")
    with pytest.raises(ConfigError, match="augmentation"):
        TrainConfig(augmentation="mixup")
    with pytest.raises(ConfigError, match="time_budget"):
        TrainConfig(time_budget="soon")
    assert parse_duration("2h") == 7200 and parse_duration(" 90S ") == 90


def test_plan_keeps_a_reserve_and_at_least_one_epoch():
    cost = EpochCost(train_seconds=50.0, val_seconds=10.0)
    assert plan_epochs(cost, seconds_left=600.0, wanted=100) == 9  # 600 * 0.92 / 60 = 9.2
    assert plan_epochs(cost, seconds_left=650.0, wanted=100) == 9  # 9.97: the reserve is kept
    assert plan_epochs(cost, seconds_left=600.0, wanted=4) == 4
    assert plan_epochs(cost, seconds_left=5.0, wanted=4) == 1


def _budget_config(**kwargs):
    base = dict(backbone="tiny_resnet", strategy="full", lr=1e-3, batch_size=8, image_size=32, seed=0, epochs=50)
    return TrainConfig(**{**base, **kwargs})


def test_time_budget_plans_the_epochs_from_the_measured_cost(tmp_path, image_folder, monkeypatch, capsys):
    from transferkit.train import _budget as budget_module

    # A measured epoch of 2.5 s: a 20 s budget has room for 7 at most (less set-up), not the 10 asked for.
    monkeypatch.setattr(budget_module, "measure_epoch", lambda *a, **k: EpochCost(2.0, 0.5))
    run = tmp_path / "run"
    result = train_run(_budget_config(time_budget="20s", epochs=10), from_folder(image_folder), run_dir=run)
    planned = int(re.search(r"(\d+) of 10 epochs planned", capsys.readouterr().err).group(1))
    assert 1 <= planned <= 7
    # The real epochs are far shorter: the first one shows that all 10 fit, and the plan grows to them.
    assert len(result.history) == 10 == json.loads((run / "budget.json").read_text())["full"]
    assert (run / "best.safetensors").is_file()


def test_a_run_that_falls_behind_its_plan_stops_at_an_epoch_end(tmp_path, image_folder, monkeypatch, capsys):
    from transferkit.train import _budget as budget_module

    # A measurement far too optimistic plans all 50 epochs; the real ones cannot fit in 2 s.
    monkeypatch.setattr(budget_module, "measure_epoch", lambda *a, **k: EpochCost(1e-4, 1e-4))
    result = train_run(_budget_config(time_budget="2s"), from_folder(image_folder), run_dir=tmp_path / "run")
    assert len(result.history) < 50
    assert result.seconds < 15
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_epochs_slower_than_measured_shorten_the_schedule_so_the_rate_still_decays_to_zero(
    tmp_path, image_folder, monkeypatch, capsys
):
    import time

    from transferkit.train import _budget as budget_module
    from transferkit.train import _tracker as tracker_module

    # The timed steps say 1 s an epoch, so all 10 are planned in 1000 s; each real epoch then takes 100 s of the
    # budget (a clock that moves 100 s at every epoch end): 9 fit. The decay must end at epoch 9, not be cut off.
    monkeypatch.setattr(budget_module, "measure_epoch", lambda *a, **k: EpochCost(1.0, 0.0))
    skew = [0.0]
    monkeypatch.setattr(tracker_module, "_clock", lambda: time.perf_counter() + skew[0])

    def slow(row, lrs, confusion):
        skew[0] += 100.0

    run = tmp_path / "run"
    config = _budget_config(time_budget="1000s", epochs=10, warmup_epochs=0)
    result = train_run(config, from_folder(image_folder), run_dir=run, listeners=[slow])
    assert [h.epoch for h in result.history] == list(range(1, 10))
    assert json.loads((run / "budget.json").read_text())["full"] == 9  # a resumed run keeps the shortened plan
    # Each epoch's row gives the head's rate (10 x 1e-3) as it began: a cosine over 9 epochs from epoch 2 on, which
    # reaches zero as epoch 9 ends (a 10-epoch decay cut off there would have ended at 2.4% of the peak).
    head = 10 * config.lr
    for h in result.history[1:]:
        assert h.lr == pytest.approx(head * 0.5 * (1 + math.cos(math.pi * (h.epoch - 1) / 9)), rel=1e-6)
    assert "the schedule now ends at epoch 9" in capsys.readouterr().err


def test_epochs_faster_than_measured_lengthen_a_cut_schedule_towards_the_epochs_asked_for(
    tmp_path, image_folder, monkeypatch, capsys
):
    from transferkit.train import _budget as budget_module

    # The timed steps say 200 s an epoch, so 4 of the 12 epochs asked for are planned in 1000 s; the real epochs take
    # a fraction of a second, so after the first one all 12 fit, and the decay is re-planned over 12.
    monkeypatch.setattr(budget_module, "measure_epoch", lambda *a, **k: EpochCost(200.0, 0.0))
    run = tmp_path / "run"
    config = _budget_config(time_budget="1000s", epochs=12, warmup_epochs=0)
    result = train_run(config, from_folder(image_folder), run_dir=run)
    err = capsys.readouterr().err
    assert "4 of 12 epochs planned" in err and "the schedule now ends at epoch 12 (was 4)" in err
    assert [h.epoch for h in result.history] == list(range(1, 13))
    assert json.loads((run / "budget.json").read_text())["full"] == 12  # a resumed run keeps the longer plan
    head = 10 * config.lr
    for h in result.history[1:]:  # from epoch 2 on, a cosine over 12 epochs (over 4 it would be at zero by epoch 5)
        assert h.lr == pytest.approx(head * 0.5 * (1 + math.cos(math.pi * (h.epoch - 1) / 12)), rel=1e-6)


def test_pad_crop_on_array_sources_trains_from_whole_batches(tmp_path, image_folder, monkeypatch):
    from transferkit.train import _loaders as loaders_module

    made = []
    real = loaders_module.ArrayBatches

    def spy(*args, **kwargs):
        made.append(kwargs["train"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loaders_module, "ArrayBatches", spy)
    config = _budget_config(epochs=3, augmentation="pad-crop", cache_dir=str(tmp_path / "cache"))
    result = train_run(config, from_folder(image_folder), run_dir=tmp_path / "run")
    assert sorted(made) == [False, True]  # the decoded images feed both the training and the validation loader
    assert result.best_val_acc > 0.5  # three classes: chance is 1/3


def test_measuring_an_epoch_leaves_the_model_and_optimiser_as_they_were():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from transferkit.train import StepSettings
    from transferkit.train._budget import measure_epoch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    data = DataLoader(TensorDataset(torch.randn(40, 3, 6, 6), torch.arange(40) % 2), batch_size=4)
    model(torch.randn(1, 3, 6, 6))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost = measure_epoch(model, data, data, optimizer, StepSettings())
    assert cost.train_seconds > 0 and cost.val_seconds > 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert optimizer.state_dict()["state"] == {}
