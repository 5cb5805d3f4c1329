import numpy as np
from PIL import Image

from transferkit.cli import main


def _folder(root, per_class=8):
    rng = np.random.default_rng(0)
    for name, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_compare_and_report_commands(tmp_path, capsys):
    data = _folder(tmp_path / "pets")
    args = ["--backbone", "tiny_resnet", "--epochs", "2", "--image-size", "32", "--batch-size", "8"]
    code = main(["compare", str(data), "--strategies", "linear-probe,full", *args, "--out", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "; trainable " in err and "best val acc" in err  # training reports on stderr
    compare_dir = tmp_path / "runs" / "pets-compare-001"
    table = out[out.index("tiny_resnet: pets-compare-001") :]  # the summary table is the result: stdout, short name
    assert "linear-probe" in table and "full" in table and "test acc" not in table and str(tmp_path) not in table
    assert (compare_dir / "compare.json").is_file()
    assert (compare_dir / "linear-probe" / "val" / "metrics.json").is_file()

    (compare_dir / "report.html").unlink()
    assert main(["report", str(compare_dir)]) == 0
    assert "report:" in capsys.readouterr().out
    assert '<img src="data:image/png;base64,' in (compare_dir / "report.html").read_text()

    # A single run directory reports too.
    assert main(["report", str(compare_dir / "full"), "--out", str(tmp_path / "full.html")]) == 0
    assert "full" in (tmp_path / "full.html").read_text()


def test_compare_command_errors_are_one_line(tmp_path, capsys):
    data = _folder(tmp_path / "pets", per_class=4)
    assert main(["compare", str(data), "--strategies", "full,bogus", "--out", str(tmp_path / "runs")]) == 2
    assert "unknown strategy bogus" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder, nor a compare folder" in capsys.readouterr().err
