import json

import numpy as np
import pytest
from rich.console import Console

import transferkit.compare as compare_module
from transferkit.compare import CompareResult, run_compare
from transferkit.models import backbone_stages, build_model
from transferkit.report.html import summary_table
from transferkit.train.rundir import RunDir

STRATEGIES = ["linear-probe", "full", "scratch"]  # as the `compared` fixture runs them


def _render(table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_every_strategy_gets_a_normal_run_directory(compared):
    root = compared.compare_dir
    assert root.name.startswith("generated-0-compare-")
    assert [r.strategy for r in compared.runs] == STRATEGIES
    for run in compared.runs:
        assert run.status == "ok", run.error
        path = root / run.strategy
        for name in ("config.yaml", "metrics.jsonl", "best.safetensors", "load_report.json", "curves.png"):
            assert (path / name).is_file(), name
        summary = json.loads((path / "summary.json").read_text())
        test = json.loads((path / "test" / "metrics.json").read_text())
        assert summary["best_val_acc"] == pytest.approx(run.best_val_acc)
        assert summary["test_acc"] == pytest.approx(test["accuracy"]) == pytest.approx(run.test_acc)
        assert test["n"] == 18
        assert (path / "test" / "confusion.png").is_file()
        predictions = (path / "test" / "predictions.csv").read_text().splitlines()
        assert len(predictions) == 1 + 18
    assert (root / "curves.png").is_file() and (root / "report.html").is_file()


def test_strategies_share_split_and_settings(compared):
    configs = [(compared.compare_dir / r.run_dir / "config.yaml").read_text() for r in compared.runs]
    data = [json.loads((compared.compare_dir / r.run_dir / "data.json").read_text()) for r in compared.runs]
    assert all(d["val"]["counts"] == data[0]["val"]["counts"] for d in data)
    assert data[0]["val"]["n_images"] == 10 and data[0]["train"]["n_images"] == 38
    for text in configs:
        assert "epochs: 3" in text and "image_size: 32" in text and "seed: 0" in text


def test_trainable_parameters_follow_the_strategy(compared):
    params = {s.strategy: s.trainable_params for s in compared.summaries}
    head = build_model("tiny_resnet", 3, pretrained=False).model.get_classifier()
    assert params["linear-probe"] == sum(p.numel() for p in head.parameters())  # the new head only
    assert params["full"] == params["scratch"] > 100 * params["linear-probe"]


def test_the_pretrained_free_comparison_still_learns(compared):
    # Random-init tiny models on an easy 3-class problem: the best run must beat chance clearly.
    best = compared.summary(compared.best_strategy)
    assert best.test_acc_mean == max(s.test_acc_mean for s in compared.summaries)
    assert best.val_acc_mean > 0.6


def test_time_to_target_comes_from_metrics(compared):
    target = compared.targets["all"]
    assert target == pytest.approx(min(r.best_val_acc for r in compared.runs))
    for run in compared.runs:
        rows = RunDir(compared.compare_dir / run.run_dir).metrics()
        cumulative = np.cumsum([row["seconds"] for row in rows])
        first = next(i for i, row in enumerate(rows) if row["val_acc"] >= target - 1e-9)
        assert run.seconds_to_target == pytest.approx(cumulative[first])


def test_compare_json_holds_every_figure(compared):
    saved = json.loads((compared.compare_dir / "compare.json").read_text())
    assert saved == json.loads(json.dumps(compared.to_dict(), default=str))
    loaded = CompareResult.load(compared.compare_dir)
    assert loaded.runs == compared.runs and loaded.summaries == compared.summaries
    assert saved["data"]["test"]["n_images"] == 18 and saved["eval_split"] == "test"
    assert "strategy" not in saved["config"]


def test_table_shows_the_figures(compared):
    text = _render(summary_table(compared))
    for header in ("strategy", "trainable params", "best val acc", "test acc", "wall time", "time to target"):
        assert header in text
    for s in compared.summaries:
        assert s.strategy in text
        assert f"{s.trainable_params:,}" in text
        assert f"{100 * s.val_acc_mean:.2f}%" in text and f"{100 * s.test_acc_mean:.2f}%" in text
        assert f"{s.wall_seconds:.1f} s" in text


def test_a_failing_strategy_does_not_stop_the_others(tmp_path, monkeypatch, make_images, make_config):
    seen_val = []
    real_train_run = compare_module.train_run

    def train_run(config, train, val, *, run_dir, **options):
        seen_val.append((config.strategy, val.fingerprint(), len(train)))
        if config.strategy == "full":
            raise RuntimeError("boom")
        return real_train_run(config, train, val, run_dir=run_dir, **options)

    monkeypatch.setattr(compare_module, "train_run", train_run)
    # partial --freeze 99 fails for real: the tiny ResNet has 5 stages.
    result = run_compare(
        make_images(10, seed=2),
        config=make_config(epochs=2, freeze=99),
        strategies=["full", "linear-probe", "partial"],
        out=tmp_path,
    )
    status = {r.strategy: r.status for r in result.runs}
    assert status == {"full": "failed", "linear-probe": "ok", "partial": "failed"}
    assert len({fingerprint for _, fingerprint, _ in seen_val}) == 1  # one validation split for all
    errors = {r.strategy: r.error for r in result.runs}
    assert errors["full"] == "RuntimeError: boom"
    assert "--freeze 99" in errors["partial"]
    assert "RuntimeError: boom" in (result.compare_dir / "full" / "error.txt").read_text()
    assert result.best_strategy == "linear-probe"
    saved = json.loads((result.compare_dir / "compare.json").read_text())
    assert [s["status"] for s in saved["summaries"]] == ["failed", "ok", "failed"]
    text = _render(summary_table(result))
    assert text.count("failed") >= 2 and "linear-probe" in text
    html = (result.compare_dir / "report.html").read_text()
    assert "Failed runs" in html and "RuntimeError: boom" in html


def test_partial_freezes_half_the_stages_by_default(tmp_path, make_images, make_config):
    result = run_compare(
        make_images(8, seed=3), config=make_config(epochs=1), strategies=["partial"], out=tmp_path, report=False
    )
    stages = backbone_stages(build_model("tiny_resnet", 3, pretrained=False).model)
    assert result.info["per_strategy"]["partial"]["freeze"] == len(stages) // 2
    config = (result.compare_dir / "partial" / "config.yaml").read_text()
    assert f"freeze: {len(stages) // 2}" in config
    assert not (result.compare_dir / "report.html").exists()


def test_cross_validation_gives_per_fold_results(tmp_path, make_images, make_config):
    train, val = make_images(8, seed=4), make_images(4, seed=5)
    result = run_compare(
        train, val=val, config=make_config(epochs=2), strategies=["linear-probe", "full"], cv=2, out=tmp_path
    )
    assert [(r.strategy, r.fold) for r in result.runs] == [
        ("linear-probe", 1),
        ("full", 1),
        ("linear-probe", 2),
        ("full", 2),
    ]
    root = result.compare_dir
    for run in result.runs:
        assert run.status == "ok"
        assert run.run_dir == f"{run.strategy}/fold-{run.fold}"
        assert (root / run.run_dir / "curves.png").is_file()
        assert (root / run.run_dir / "val" / "confusion.png").is_file()
    assert (root / "curves-fold-1.png").is_file() and (root / "curves-fold-2.png").is_file()
    # The two folds' validation sets partition train + val.
    val_sizes = [json.loads((root / f"full/fold-{k}/data.json").read_text())["val"]["n_images"] for k in (1, 2)]
    assert sum(val_sizes) == len(train) + len(val)
    for s in result.summaries:
        accs = [r.best_val_acc for r in result.runs if r.strategy == s.strategy]
        assert s.val_acc_mean == pytest.approx(np.mean(accs)) and s.val_acc_std == pytest.approx(np.std(accs))
        assert s.wall_seconds == pytest.approx(sum(r.wall_seconds for r in result.runs if r.strategy == s.strategy))
    assert set(result.targets) == {"1", "2"}
    text = _render(summary_table(result))
    assert "val acc (mean ± std)" in text
    s = result.summaries[0]
    assert f"{100 * s.val_acc_mean:.2f} ± {100 * s.val_acc_std:.2f}%" in text
    html = (root / "report.html").read_text()
    assert "fold 1" in html and "fold 2" in html and html.count('<img src="data:image/png;base64,') >= 3


@pytest.mark.parametrize(
    ("strategies", "cv", "message"),
    [
        (["linear-probe", "bogus"], None, "unknown strategy bogus"),
        (["full", "full"], None, "repeat"),
        ("full", 1, "at least 2"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, strategies, cv, message, make_images, make_config):
    with pytest.raises(ValueError, match=message):
        run_compare(make_images(4, seed=0), config=make_config(), strategies=strategies, cv=cv, out=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing is created before the arguments are checked
