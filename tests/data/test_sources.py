import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    ImageDataset,
    ImageSource,
    fashion_mnist,
    from_folder,
    from_idx,
    from_list,
)


def _image(path, size=(8, 6), colour=(0, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pets"
    _image(root / "dog" / "d1.png")
    _image(root / "cat" / "c1.PNG", size=(10, 4))
    _image(root / "cat" / "nested" / "c2.jpg")
    _image(root / "cat" / ".hidden-dir" / "c3.png")
    _image(root / "cat" / ".c4.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    _image(root / ".cache" / "x.png")
    _image(root / "stray.png")
    return root


def test_from_folder(folder):
    source = from_folder(folder)
    assert source.classes == ["cat", "dog"]
    assert [p.relative_to(folder).as_posix() for p in source.paths] == ["cat/c1.PNG", "cat/nested/c2.jpg", "dog/d1.png"]
    assert source.labels.tolist() == [0, 0, 1]
    assert source.labels.dtype == np.int64
    assert source.name == str(folder)
    img = source.load(0)
    assert (img.mode, img.size) == ("RGB", (10, 4))


def test_from_folder_empty_class_names_the_folder(folder):
    (folder / "bird").mkdir()
    _image(folder / "bird" / ".hidden.png")
    with pytest.raises(DataError, match="class folder has no images") as info:
        from_folder(folder)
    assert str(folder / "bird") in str(info.value)


def test_from_folder_without_class_folders(tmp_path):
    _image(tmp_path / "a.png")
    with pytest.raises(DataError, match="no class folders"):
        from_folder(tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        from_folder(tmp_path / "absent")


def _write_list(tmp_path, text, name="train.txt"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_from_list_with_names_comments_and_spaces(tmp_path):
    _image(tmp_path / "imgs" / "a.png")
    _image(tmp_path / "imgs" / "my photo 2.png")
    listing = _write_list(tmp_path, "# path label\n\nimgs/a.png  zebra\n  imgs/my photo 2.png\tant  \n")
    source = from_list(listing)
    assert source.classes == ["ant", "zebra"]
    assert source.labels.tolist() == [1, 0]
    assert source.paths[1] == tmp_path / "imgs" / "my photo 2.png"
    assert source.name == str(listing)


def test_from_list_with_indices_and_root(tmp_path):
    for name in "abc":
        _image(tmp_path / "data" / f"{name}.png")
    listing = _write_list(tmp_path, "a.png 0\nb.png 3\nc.png 3\n", name="lists/val.txt")
    source = from_list(listing, root=tmp_path / "data")
    assert source.classes == ["0", "1", "2", "3"]
    assert source.labels.tolist() == [0, 3, 3]
    assert source.class_counts() == {"0": 1, "1": 0, "2": 0, "3": 2}


def test_from_list_with_given_classes(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    listing = _write_list(tmp_path, "a.png dog\nb.png 0\n")
    source = from_list(listing, classes=["cat", "dog"])
    assert source.labels.tolist() == [1, 0]

    with pytest.raises(DataError, match=r"train.txt line 2: unknown class 'bird' \(classes: cat, dog\)"):
        from_list(_write_list(tmp_path, "a.png cat\nb.png bird\n"), classes=["cat", "dog"])
    with pytest.raises(DataError, match="train.txt line 1: class index 2 is out of range for 2 classes"):
        from_list(_write_list(tmp_path, "a.png 2\n"), classes=["cat", "dog"])


def test_from_list_errors_name_the_line(tmp_path):
    _image(tmp_path / "imgs" / "a.png")
    with pytest.raises(DataError, match=r"train.txt line 3: expected '<path> <label>'"):
        from_list(_write_list(tmp_path, "imgs/a.png 0\n\nimgs/a.png\n"))
    with pytest.raises(DataError, match="train.txt line 2: file not found: imgs/b.jpg"):
        from_list(_write_list(tmp_path, "imgs/a.png 0\nimgs/b.jpg 1\n"))
    with pytest.raises(DataError, match="train.txt line 2: label 'cat' mixes class names and integer indices"):
        from_list(_write_list(tmp_path, "imgs/a.png 0\nimgs/a.png cat\n"))
    with pytest.raises(DataError, match="list file not found"):
        from_list(tmp_path / "absent.txt")
    with pytest.raises(DataError, match="no entries"):
        from_list(_write_list(tmp_path, "# nothing\n"))


def _write_idx(path, magic, array, compress=True):
    data = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [True, False])
def test_from_idx_round_trip(tmp_path, compress):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([2, 0, 2], dtype=np.uint8)
    source = from_idx(
        _write_idx(tmp_path / "images-idx3-ubyte.gz", 0x803, images, compress),
        _write_idx(tmp_path / "labels-idx1-ubyte.gz", 0x801, labels, compress),
    )
    assert np.array_equal(source.arrays, images)
    assert source.labels.tolist() == [2, 0, 2]
    assert source.classes == ["0", "1", "2"]
    img = source.load(1)
    assert (img.mode, img.size, img.getpixel((1, 0))) == ("RGB", (5, 4), (21, 21, 21))


def test_from_idx_errors_name_the_file(tmp_path):
    images = _write_idx(tmp_path / "images.gz", 0x803, np.zeros((2, 3, 3)))
    labels = _write_idx(tmp_path / "labels.gz", 0x801, np.zeros(2))
    with pytest.raises(DataError, match=r"labels.gz: not the expected IDX file \(magic number 0x00000801"):
        from_idx(labels, labels)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(images.read_bytes()[:-1]))
    with pytest.raises(DataError, match="short.gz"):
        from_idx(short, labels)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(gzip.decompress(images.read_bytes())[:-1])
    with pytest.raises(DataError, match="truncated: header declares shape"):
        from_idx(truncated, labels)
    three = _write_idx(tmp_path / "three.gz", 0x801, np.zeros(3))
    with pytest.raises(DataError, match="holds 2 images but .*three.gz holds 3 labels"):
        from_idx(images, three)
    with pytest.raises(DataError, match="labels.gz: label 0 is out of range for 0 classes"):
        from_idx(images, labels, classes=[])


def test_fashion_mnist_missing_files(tmp_path):
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"):
        fashion_mnist(tmp_path, split="test")
    with pytest.raises(ValueError, match="split"):
        fashion_mnist(tmp_path, split="val")


FMNIST = Path(os.environ.get("TRANSFERKIT_FMNIST", "/usr/share/datasets/fashion-mnist"))


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason=f"Fashion-MNIST not found in {FMNIST}")
def test_fashion_mnist_real_files():
    train = fashion_mnist(FMNIST, "train")
    test = fashion_mnist(FMNIST, split="test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.classes == FASHION_MNIST_CLASSES
    assert train.arrays.shape[1:] == (28, 28)
    assert set(train.class_counts().values()) == {6000}
    assert train.name == "fashion-mnist/train"
    assert train.load(0).size == (28, 28)


def test_image_source_validation():
    arrays = np.zeros((2, 4, 4), dtype=np.uint8)
    with pytest.raises(DataError, match="exactly one of paths and arrays"):
        ImageSource(classes=["a"], labels=np.array([0, 0]))
    with pytest.raises(DataError, match="exactly one of paths and arrays"):
        ImageSource(classes=["a"], labels=np.array([0, 0]), paths=["x", "y"], arrays=arrays)
    with pytest.raises(DataError, match="2 images but 3 labels"):
        ImageSource(classes=["a"], labels=np.array([0, 0, 0]), arrays=arrays)
    with pytest.raises(DataError, match="label 1 is out of range for 1 classes"):
        ImageSource(classes=["a"], labels=np.array([0, 1]), arrays=arrays)
    with pytest.raises(DataError, match="uint8"):
        ImageSource(classes=["a"], labels=np.array([0, 0]), arrays=arrays.astype(np.float32))
    with pytest.raises(DataError, match="duplicate class names"):
        ImageSource(classes=["a", "a"], labels=np.array([0, 0]), arrays=arrays)


def test_subset_counts_and_describe(folder):
    source = from_folder(folder)
    sub = source.subset([2, 0])
    assert sub.classes == source.classes and sub.name == source.name
    assert sub.labels.tolist() == [1, 0]
    assert sub.paths == [source.paths[2], source.paths[0]]
    assert source.class_counts() == {"cat": 2, "dog": 1}

    summary = source.describe()
    assert summary["n_images"] == 3 and summary["n_classes"] == 2
    assert summary["counts"] == {"cat": 2, "dog": 1}
    assert summary["image_sizes"] == {
        "sampled": 3,
        "unreadable": 0,
        "min_width": 8,
        "max_width": 10,
        "min_height": 4,
        "max_height": 6,
    }

    arrays = ImageSource(classes=["a", "b"], labels=np.array([0, 1, 1]), arrays=np.zeros((3, 5, 7, 3), np.uint8))
    assert arrays.subset(np.array([1])).arrays.shape == (1, 5, 7, 3)
    assert arrays.describe()["image_sizes"]["max_width"] == 7


def test_fingerprint_tracks_files_labels_and_arrays(folder):
    source = from_folder(folder)
    first = source.fingerprint()
    assert first == from_folder(folder).fingerprint()
    assert source.subset([0, 1]).fingerprint() != first
    path = source.paths[0]
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))
    assert from_folder(folder).fingerprint() != first

    arrays = np.zeros((2, 3, 3), dtype=np.uint8)
    a = ImageSource(classes=["a", "b"], labels=np.array([0, 1]), arrays=arrays)
    b = ImageSource(classes=["a", "b"], labels=np.array([0, 1]), arrays=arrays.copy())
    assert a.fingerprint() == b.fingerprint()
    b.arrays[1, 0, 0] = 1
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() != ImageSource(classes=["a", "b"], labels=np.array([1, 1]), arrays=arrays).fingerprint()


def test_image_dataset(folder):
    source = from_folder(folder)
    dataset = ImageDataset(source, transform=lambda img: torch.tensor(img.size))
    assert len(dataset) == 3
    tensor, label = dataset[2]
    assert tensor.tolist() == [8, 6] and label == 1 and type(label) is int
    image, _ = ImageDataset(source)[0]
    assert isinstance(image, Image.Image)

    source.paths[0].write_text("corrupt")
    with pytest.raises(DataError, match="c1.PNG"):
        dataset[0]
