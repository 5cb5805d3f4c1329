"""``strategy: auto`` races the candidates: the prior, successive halving, the budget, and a real race end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transferkit import TrainConfig, from_folder
from transferkit.advise import Measurements, decide
from transferkit.advise.race import Entrant, Race, Trial, choose_winner, plan_race, run_race, rungs_for
from transferkit.cli import main


def _measurements(stage_logme, probe_gain=0.85, pretrained=True, per_class=12):
    return Measurements(
        "tiny_resnet", pretrained, n_images=3 * per_class, n_classes=3, min_per_class=per_class,
        median_per_class=per_class, imbalance=1.0, image_size=32, logme=stage_logme[-1], probe_acc=0.9,
        probe_gain=probe_gain, stage_names=["conv1,bn1", "layer1", "layer2", "layer3", "layer4"],
        stage_logme=stage_logme,
    )  # fmt: skip


PEAKED = _measurements([0.1, 0.3, 0.0, -0.2, -0.4])  # small and different: partial, LogME best at stage 1
RISING = _measurements([-0.4, -0.2, 0.0, 0.1, 0.3])  # small and similar: linear-probe


class FakeTrainer:
    """Scores each trial from a table (strategy -> accuracy at 1 epoch, gain per epoch), recording what ran; `f1`
    gives a strategy's select_by figure when it is not its accuracy."""

    def __init__(
        self,
        start: dict[str, float],
        gain: dict[str, float] | None = None,
        fail: str | None = None,
        f1: dict[str, float] | None = None,
    ):
        self.start, self.gain, self.fail, self.f1, self.ran = start, gain or {}, fail, f1 or {}, []

    def __call__(self, config: TrainConfig, path):
        self.ran.append((config.strategy, config.epochs, config.freeze))
        if config.strategy == self.fail:
            raise RuntimeError("out of memory")
        acc = min(1.0, self.start[config.strategy] + self.gain.get(config.strategy, 0.0) * (config.epochs - 1))
        path.mkdir(parents=True)
        (path / "best.safetensors").write_bytes(b"weights")
        (path / "metrics.jsonl").write_text("{}\n")
        return acc, [acc] * config.epochs, self.f1.get(config.strategy, acc)


def test_rungs_screen_then_the_last_one_trains_the_whole_schedule():
    assert rungs_for(12, 3, 1) == [2, 3, 12]  # 3 candidates -> 2 -> 1, which trains all 12 epochs
    assert rungs_for(16, 4, 1) == [2, 4, 16]
    assert rungs_for(6, 2, 1) == [2, 6]
    assert rungs_for(6, 1, 1) == [6]  # nothing to screen
    assert rungs_for(2, 2, 1) == [2]  # never longer than the final schedule: both train it
    assert rungs_for(10, 0, 1) == []
    # Two finalists: two fine-tuners both train the whole schedule; four are screened once, to two.
    assert rungs_for(6, 2, 2) == [6] and rungs_for(16, 4, 2) == [4, 16] and rungs_for(12, 3, 2) == [3, 12]


def test_the_prior_orders_the_candidates_and_says_why_it_kept_some_out():
    config = TrainConfig(backbone="tiny_resnet", strategy="auto")
    entrants, pruned = plan_race(decide(PEAKED), config)
    names = [e.strategy for e in entrants]
    assert names[0] == "partial" and "baseline" in names and "scratch" not in names
    assert "from random weights" in pruned["scratch"]
    assert {e.strategy: e.fixed for e in entrants}["linear-probe"]  # an L-BFGS probe runs once
    assert next(e for e in entrants if e.strategy == "partial").freeze == 2  # the advised depth
    entrants, pruned = plan_race(decide(RISING), config)
    assert "partial" in pruned and "best stage" in pruned["partial"]  # similar: no depth to keep frozen
    entrants, pruned = plan_race(decide(_measurements(RISING.stage_logme, pretrained=False)), config)
    assert sorted(e.strategy for e in entrants) == ["baseline", "scratch"]


def test_successive_halving_keeps_the_better_half_and_the_last_trains_the_whole_schedule(tmp_path):
    config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=12)
    fake = FakeTrainer(
        {"baseline": 0.70, "linear-probe": 0.75, "partial": 0.60, "full": 0.65, "lp-ft": 0.50},
        gain={"partial": 0.01, "full": 0.04, "lp-ft": 0.01},
    )
    race = run_race(decide(PEAKED), config, from_folder_stub(), None, tmp_path, train_fn=fake)
    ran = [(s, e) for s, e, _ in fake.ran]
    assert [s for s, _ in ran].count("baseline") == 1 and [s for s, _ in ran].count("linear-probe") == 1
    assert [e for s, e in ran if s == "full"] == [2, 3, 12]  # it survives both cuts and trains the whole schedule
    assert [e for s, e in ran if s == "lp-ft"] == [2]  # worst at the first rung
    assert [e for s, e in ran if s == "partial"] == [2, 3]  # second at the first rung, cut at the second
    assert race.winner == "full"  # 0.65 + 11 x 0.04 at 12 epochs beats the probe's 0.75
    assert "rung 1" in race.entrant("lp-ft").dropped and "rung 2" in race.entrant("partial").dropped
    assert "below full" in race.entrant("linear-probe").dropped
    # Scored trials keep curves, not weights; the winner's whole-plan trial keeps them until the run takes it.
    assert race.winner_run == "race/full-12ep"
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.safetensors")] == [
        "race/full-12ep/best.safetensors"
    ]
    assert (tmp_path / "race" / "full-12ep" / "metrics.jsonl").is_file()
    again = Race.from_dict(json.loads(json.dumps(race.to_dict())))
    assert again.winner == "full" and again.rows() == race.rows()
    assert "full" in race.explain() and "winner" in race.explain()


def test_the_baseline_wins_unless_beaten_and_ties_go_to_the_cheaper(tmp_path):
    config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=4)
    fake = FakeTrainer({"baseline": 0.90, "linear-probe": 0.80, "lp-ft": 0.70, "full": 0.70})
    race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path / "a", train_fn=fake)
    assert race.winner == "baseline"
    # 18/20 as float32 from a network and as float64 from scikit-learn: still a tie, and the baseline costs less
    tied = FakeTrainer({"baseline": 0.9, "linear-probe": 0.5, "lp-ft": float(np.float32(0.9)), "full": 0.7})
    race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path / "b", train_fn=tied)
    assert race.winner == "baseline" and "tied" in race.entrant("lp-ft").dropped
    probe_ties = FakeTrainer({"baseline": 0.5, "linear-probe": 0.8, "lp-ft": 0.8, "full": 0.8})
    race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path / "c", train_fn=probe_ties)
    assert race.winner == "linear-probe"  # the probe runs once; the fine-tuners tie it
    assert "costs less" in race.entrant("lp-ft").dropped and "tied at the cut" in race.entrant("full").dropped
    tuners_tie = FakeTrainer({"baseline": 0.5, "linear-probe": 0.6, "lp-ft": 0.8, "full": 0.8})
    race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path / "d", train_fn=tuners_tie)
    assert race.winner == "lp-ft" and "tied at the cut" in race.entrant("full").dropped


def test_the_race_ranks_by_the_select_by_figure_the_baseline_can_give_too(tmp_path):
    accuracy = {"baseline": 0.90, "linear-probe": 0.80, "lp-ft": 0.70, "full": 0.85}
    f1 = {"baseline": 0.50, "linear-probe": 0.60, "lp-ft": 0.55, "full": 0.75}  # the baseline misses a small class
    fake = FakeTrainer(accuracy, f1=f1)
    config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=4, select_by="macro-f1")
    race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path / "f1", train_fn=fake)
    assert race.metric == "macro-f1" and race.winner == "full" and "ranked by validation macro-f1" in race.budget_note
    assert race.entrant("baseline").dropped == "macro-f1 50.00%, below full's macro-f1 75.00%"
    assert "85.00% (macro-f1 75.00%)" in dict((r[0], r[1]) for r in race.rows())["full"]
    again = Race.from_dict(json.loads(json.dumps(race.to_dict())))
    assert again.metric == "macro-f1" and again.entrant("full").score == 0.75
    # By accuracy the same trials make the baseline the winner; select_by loss ranks by accuracy too (no SVM loss).
    for select_by in ("accuracy", "loss"):
        config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=4, select_by=select_by)
        race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path / select_by, train_fn=fake)
        assert race.metric == "accuracy" and race.winner == "baseline"
        assert all(t.score is None for e in race.entrants for t in e.trials)


def test_a_costlier_candidate_must_beat_a_cheaper_one_by_more_than_the_validation_noise():
    def field(**scores):
        return [
            Entrant(s, "", fixed=s in ("baseline", "linear-probe"), trials=[Trial(4, acc, 1.0)])
            for s, acc in scores.items()
        ]

    # 15 of 20 against 13 of 20: one standard error of the difference is 14.4 points, so the baseline stays.
    small = field(baseline=0.65, **{"linear-probe": 0.60}, full=0.75)
    assert choose_winner(small, 20, margin=0.0).strategy == "full"  # without the rule: the best
    assert choose_winner(small, 20, margin=1.0).strategy == "baseline"
    assert choose_winner(small, None, margin=1.0).strategy == "full"  # no image count, no rule
    # 176 of 200 against 162 of 200: 7 points, twice the noise (3.5): the fine-tuner wins.
    assert choose_winner(field(baseline=0.80, **{"linear-probe": 0.81}, full=0.88), 200, margin=1.0).strategy == "full"
    # Within the noise of the best, the cheapest such wins (the probe beats a baseline that is far below).
    near = field(baseline=0.70, **{"linear-probe": 0.86}, full=0.88)
    assert choose_winner(near, 200, margin=1.0).strategy == "linear-probe"
    # Two fine-tuners cost the same: the better one wins however close.
    tuners = [Entrant("lp-ft", "", trials=[Trial(4, 0.87, 1.0)]), Entrant("full", "", trials=[Trial(4, 0.88, 1.0)])]
    assert choose_winner(tuners, 20, margin=1.0).strategy == "full"


def test_a_failing_candidate_leaves_the_race_and_the_others_go_on(tmp_path):
    config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=4)
    fake = FakeTrainer({"baseline": 0.5, "linear-probe": 0.6, "lp-ft": 0.7, "full": 0.8}, fail="full")
    race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path, train_fn=fake)
    assert race.winner == "lp-ft" and race.entrant("full").dropped.startswith("failed: RuntimeError: out of memory")


def test_the_budget_stops_the_race_before_a_trial_that_would_not_fit(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("transferkit.advise.race.time.perf_counter", lambda: clock[0])

    class SlowTrainer(FakeTrainer):
        def __call__(self, config, path):
            clock[0] += 10.0 * config.epochs if config.strategy in ("lp-ft", "full") else 1.0  # 10 s a tuning epoch
            return super().__call__(config, path)

    config = TrainConfig(backbone="tiny_resnet", strategy="auto", epochs=12, time_budget="100s")  # race: 40 s
    slow = SlowTrainer({"baseline": 0.5, "linear-probe": 0.6, "lp-ft": 0.7, "full": 0.8})
    race = run_race(decide(RISING), config, from_folder_stub(), None, tmp_path, train_fn=slow)
    assert race.budget_seconds == pytest.approx(40.0)
    assert [e for s, e, _ in slow.ran if s == "full"] == [3]  # 6 epochs would take 60 s more: not started
    assert race.winner == "full" and "budget was spent" in race.budget_note


def from_folder_stub():
    return None  # the fake trainers never read the data


@pytest.fixture
def similar(monkeypatch):
    """The advisor measures small-and-similar data (the tiny backbone's weights are random, so this is staged)."""
    monkeypatch.setattr("transferkit.advise.measure", lambda source, backbone, **kwargs: RISING)


def test_train_strategy_auto_races_for_real_and_trains_the_winner(tmp_path, capsys, image_folder, similar):
    args = ["--backbone", "tiny_resnet", "--epochs", "4", "--batch-size", "8", "--image-size", "32"]
    code = main(["train", str(image_folder), "--strategy", "auto", *args, "--out", str(tmp_path), "--name", "r"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    run = tmp_path / "r-001"
    saved = json.loads((run / "advice.json").read_text())
    race = Race.from_dict(saved["race"])
    assert saved["strategy"] == race.winner and saved["rule_strategy"]
    assert f"strategy: {race.winner}" in (run / "config.yaml").read_text()
    assert race.rungs == [2, 4]  # two fine-tuners on a 4-epoch schedule: a 2-epoch screen, then the whole schedule
    tuners = [e for e in race.entrants if not e.fixed]
    assert sorted(len(e.trials) for e in tuners) == [1, 2]
    assert all(t.epochs == len(t.curve) for e in tuners for t in e.trials)
    assert all((run / t.run_dir / "metrics.jsonl").is_file() for e in tuners for t in e.trials)
    assert " ".join(err.split()).count("race:") >= 2 and race.winner in err
    assert all(e.dropped for e in race.entrants if e.strategy != race.winner)
    assert race.val_images == json.loads((run / "data.json").read_text())["val"]["n_images"] > 0


def test_compare_auto_records_the_race_in_its_run(tmp_path, image_folder, val_folder, similar):
    from transferkit.compare import run_compare

    config = TrainConfig(backbone="tiny_resnet", epochs=2, batch_size=8, image_size=32, device="cpu")
    result = run_compare(
        from_folder(image_folder), val=from_folder(val_folder), config=config, strategies="auto,baseline",
        out=tmp_path, report=True,
    )  # fmt: skip
    saved = json.loads((result.compare_dir / "auto" / "advice.json").read_text())
    assert saved["race"]["winner"] == saved["strategy"]
    html = (result.compare_dir / "report.html").read_text()
    assert "How auto chose" in html and saved["race"]["winner"] in html


def test_the_winning_trial_of_the_whole_plan_becomes_the_run_bit_for_bit(tmp_path, image_folder, similar):
    """No budget, early stopping or logger: the run takes the race's trial instead of training it again, and that is
    exactly what training the plan again would have given."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from transferkit import train_run

    args = ["--backbone", "tiny_resnet", "--epochs", "4", "--batch-size", "8", "--image-size", "32"]
    assert main(["train", str(image_folder), "--strategy", "auto", *args, "--out", str(tmp_path), "--name", "r"]) == 0
    run = tmp_path / "r-001"
    saved = json.loads((run / "advice.json").read_text())
    race = Race.from_dict(saved["race"])
    assert saved["reused_trial"] == race.winner_run and race.winner_run is not None
    assert (run / "summary.json").is_file() and not list((run / race.winner_run).glob("*.safetensors"))
    plan = TrainConfig.from_yaml(run / "config.yaml")
    assert plan.strategy == race.winner
    again = train_run(replace(plan, checkpoint_every_steps=50), from_folder(image_folder), run_dir=tmp_path / "again")
    assert again.best_epoch == json.loads((run / "summary.json").read_text())["best_epoch"]
    if race.winner != "baseline":
        ours, theirs = load_file(run / "best.safetensors"), load_file(tmp_path / "again" / "best.safetensors")
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_early_stopping_makes_the_run_train_its_plan_itself(tmp_path, image_folder, similar):
    args = ["--backbone", "tiny_resnet", "--epochs", "4", "--batch-size", "8", "--image-size", "32", "--patience", "3"]
    assert main(["train", str(image_folder), "--strategy", "auto", *args, "--out", str(tmp_path), "--name", "r"]) == 0
    saved = json.loads((tmp_path / "r-001" / "advice.json").read_text())
    assert saved["reused_trial"] is None
    assert TrainConfig.from_yaml(tmp_path / "r-001" / "config.yaml").patience == 3  # written by the run's own training
