"""The real small datasets the small-data benchmarks use, each as (training pool subset, full test set).

- ``fmnist``: Fashion-MNIST (Debian's dataset-fashion-mnist, IDX files), ``per_class`` images per class from the
  training set, tested on all 10,000 test images.
- ``digits``: scikit-learn's bundled handwritten digits (UCI, 1,797 images of 8 x 8 px, 16 grey levels): a fixed
  stratified third (599 images) is the test set, ``per_class`` images per class come from the rest.
- ``animals``: animal silhouettes, 10 classes of 1,000 images at 28 x 28 px (PyPI ``animal-mnist``, installed with
  ``pip install --no-deps animal-mnist``): a fixed half (5,000 images) is the test set. **Held out**: nothing
  was tuned on it; it is reported separately.

The validation split is left to the code under test (a stratified fifth of the training subset, as a user gets).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

from transferkit.data import ImageSource, fashion_mnist, per_class_subset

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATASETS = ("fmnist", "digits", "animals")
HELD_OUT = ("animals",)


def load(name: str, per_class: int, seed: int) -> tuple[ImageSource, ImageSource]:
    """(training subset of `per_class` images per class, drawn with `seed`; the whole test set)."""
    if name == "fmnist":
        pool, test = fashion_mnist(FMNIST_DIR, "train"), fashion_mnist(FMNIST_DIR, "test")
        test.name = "fmnist-test"
    elif name == "digits":
        pool, test = _split(*_digits(), "digits", test_fraction=1 / 3)
    elif name == "animals":
        pool, test = _split(*_animals(), "animals", test_fraction=0.5)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    train = pool.subset(per_class_subset(pool.labels, per_class, seed=seed))
    train.name = f"{name}-{per_class}"
    return train, test


def _split(images: np.ndarray, labels: np.ndarray, name: str, test_fraction: float):
    from sklearn.model_selection import train_test_split

    classes = [str(c) for c in range(int(labels.max()) + 1)]
    idx = np.arange(len(labels))
    pool_idx, test_idx = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=0)
    pool = ImageSource(classes, labels[pool_idx], arrays=images[pool_idx], name=name)
    test = ImageSource(classes, labels[test_idx], arrays=images[test_idx], name=f"{name}-test")
    return pool, test


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)  # 0-16 grey levels to 8 bits
    return images, data.target.astype(np.int64)


class _NumpyOnly(pickle.Unpickler):
    """The package stores two numpy arrays as pickles: rebuild arrays, refuse anything else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in the animal-mnist data")
        return super().find_class(module, name)


def _animals() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("animals: pip install --no-deps animal-mnist (the data ships in the wheel)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    with gzip.open(folder / "animal_data_version_3.gz") as fh:
        images = np.asarray(_NumpyOnly(fh).load(), dtype=np.uint8)
    with gzip.open(folder / "animal_label_version_3.gz") as fh:
        labels = np.asarray(_NumpyOnly(fh).load(), dtype=np.int64)
    return images, labels
