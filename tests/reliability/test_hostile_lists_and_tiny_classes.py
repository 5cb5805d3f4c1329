"""List-file paths that leave --root are refused (unless --allow-outside-root); a class with one image is named and
flagged by check; a dataset of one class is refused."""

from __future__ import annotations

import json
import shutil

import pytest

from transferkit.cli import main
from transferkit.data import DataError, from_list
from transferkit.data.check import preflight


def _one_line(text: str) -> str:
    """Console output with its line wrapping undone (the width, and so the breaks, depend on the paths)."""
    return " ".join(text.split())


@pytest.fixture
def escaping_list(image_folder, tmp_path):
    """A list under tmp_path/root whose good lines are inside the root and whose last two leave it."""
    root = tmp_path / "root"
    shutil.copytree(image_folder, root)
    secret = tmp_path / "secret.png"
    shutil.copy(image_folder / "red" / "red_00.png", secret)  # a readable image outside the root
    lines = [f"{p.relative_to(root).as_posix()} {p.parent.name}" for p in sorted(root.glob("*/*.png"))]
    lines += ["../secret.png red", f"{secret} red"]
    path = root / "train.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, len(lines) - 1, len(lines)


def test_paths_outside_the_root_are_refused(escaping_list, tmp_path, capsys):
    path, up, absolute = escaping_list
    with pytest.raises(DataError, match=rf"line {up}: \.\./secret\.png is outside the root folder"):
        from_list(path)
    assert main(["check", "--train-list", str(path), "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert any(f"line {up}: ../secret.png is outside" in e for e in errors), errors
    assert any(f"line {absolute}: {tmp_path / 'secret.png'} is outside" in e for e in errors), errors
    code = main(["train", "--train-list", str(path), "--backbone", "tiny_resnet", "--out", str(tmp_path / "runs")])
    assert code == 2 and "--allow-outside-root" in _one_line(capsys.readouterr().err)
    assert len(from_list(path, allow_outside_root=True)) == 38  # 36 inside, 2 outside


def test_a_class_with_one_image_is_named_and_flagged(image_folder, tmp_path, capsys):
    data = shutil.copytree(image_folder, tmp_path / "data")
    for extra in sorted((data / "green").glob("*.png"))[1:]:
        extra.unlink()
    assert main(["check", str(data), "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert any("class(es) 'green' have only 1 image" in e for e in errors), errors
    code = main(["train", str(data), "--backbone", "tiny_resnet", "--out", str(tmp_path / "runs")])
    err = _one_line(capsys.readouterr().err)
    assert code == 2 and "class 'green' has 1 image" in err, err


def test_a_single_class_dataset_is_refused(image_folder, tmp_path, capsys):
    data = tmp_path / "one"
    shutil.copytree(image_folder / "red", data / "red")
    assert main(["check", str(data), "--json"]) == 1
    assert any("only one class ('red')" in e for e in json.loads(capsys.readouterr().out)["errors"])
    code = main(["train", str(data), "--backbone", "tiny_resnet", "--out", str(tmp_path / "runs")])
    assert code == 2 and "a classifier needs at least 2 classes" in _one_line(capsys.readouterr().err)
    from transferkit.data import from_folder

    source = from_folder(data)
    with pytest.raises(DataError, match="only one class"):  # also with a validation set given
        preflight(source, source, max_bad_fraction=0.05)
