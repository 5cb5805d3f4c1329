import base64
import io
import json
import re
import shutil

import pytest
from PIL import Image

from transferkit.config import TrainConfig
from transferkit.report.html import ReportError, build_report
from transferkit.train.runner import train_run

_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def test_report_is_one_self_contained_file(compared):
    html = (compared.compare_dir / "report.html").read_text()
    images = _IMG.findall(html)
    best = next(r for r in compared.runs if r.strategy == compared.best_strategy)
    examples = json.loads((compared.compare_dir / best.run_dir / "test" / "misclassified.json").read_text())["examples"]
    assert len(images) == 2 + len(examples)  # curves, confusion matrix, one thumbnail per mistake
    for data in images:
        assert Image.open(io.BytesIO(base64.b64decode(data))).format == "PNG"
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)  # nothing outside the file


def test_report_shows_the_table_and_every_section(compared):
    html = (compared.compare_dir / "report.html").read_text()
    for header in ("trainable params", "best val acc", "test acc", "wall time", "time to target"):
        assert f"<th>{header}</th>" in html
    for s in compared.summaries:
        assert f"<td>{s.strategy}</td>" in html and f"<td>{100 * s.test_acc_mean:.2f}%</td>" in html
    assert f'<tr class="best"><td>{compared.best_strategy}</td>' in html
    for heading in ("Training curves", "Confusion matrix", "Misclassified images", "load report", "Dataset"):
        assert heading in html
    assert "tiny_resnet has no pretrained weights" in html  # the load report
    assert "backbone: tiny_resnet" in html and "epochs: 3" in html  # the config
    for n in (38, 10, 18):  # train / val / test sizes
        assert f"<td><b>{n}</b></td>" in html
    assert "32 × 32 px" in html


def test_user_strings_are_escaped(compared):
    html = (compared.compare_dir / "report.html").read_text()
    assert "&lt;blue&amp;&gt;" in html and "<blue&>" not in html


def test_report_rebuilds_from_the_files_alone(compared, tmp_path):
    copy = shutil.copytree(compared.compare_dir, tmp_path / "moved")
    (copy / "report.html").unlink()
    (copy / "curves.png").unlink()  # missing figures are redrawn from metrics.jsonl
    path = build_report(copy)
    assert path == copy / "report.html" and (copy / "curves.png").is_file()
    assert len(_IMG.findall(path.read_text())) == len(_IMG.findall((compared.compare_dir / "report.html").read_text()))


def test_report_of_a_single_run(tmp_path, make_images):
    config = TrainConfig(backbone="tiny_resnet", strategy="full", epochs=2, image_size=32, batch_size=16)
    train_run(config, make_images(6, seed=7), run_dir=tmp_path / "run")
    html = build_report(tmp_path / "run").read_text()
    assert "<td>full</td>" in html and "not saved for this run" in html
    assert len(_IMG.findall(html)) == 1  # the curves, drawn from metrics.jsonl
    assert (tmp_path / "run" / "curves.png").is_file()


def test_report_of_an_unrelated_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="not a compare directory"):
        build_report(tmp_path)
    with pytest.raises(ReportError, match="not found"):
        build_report(tmp_path / "missing")
