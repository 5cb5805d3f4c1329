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


def add_cell_arguments(parser, out: str) -> None:
    """The options every small-data benchmark takes: which cells, and the shared training settings."""
    parser.add_argument("--datasets", default="fmnist,digits,animals")
    parser.add_argument("--per-class", default="10,100")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", default=out)


def cells(args, **settings):
    """Yield (dataset, per_class, seed, train, test, config, load average before) for every cell of `args`.

    `config` is EfficientNet-Lite0 at ``--px``, ``--epochs`` and ``--lr`` with the cell's seed, no mid-epoch
    checkpoints, and `settings` on top.
    """
    import os

    from transferkit import TrainConfig

    for name in args.datasets.split(","):
        for per_class in (int(n) for n in args.per_class.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                load_before = os.getloadavg()[0]
                train, test = load(name, per_class, seed)
                config = TrainConfig(
                    backbone="efficientnet_lite0", epochs=args.epochs, lr=args.lr, image_size=args.px, seed=seed,
                    checkpoint_every_steps=0, **settings,
                )  # fmt: skip
                yield name, per_class, seed, train, test, config, load_before


def record(row: dict, rows: list[dict], out) -> None:
    """Keep a finished cell: in `rows`, appended to ``out/results.jsonl`` and printed as one JSON line."""
    import json

    rows.append(row)
    with (out / "results.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def print_tables(rows: list[dict], render) -> None:
    """The datasets tuned on, then the held-out ones, each as `render(rows)` (markdown)."""
    for title, keep in (
        ("tuned-on", lambda r: r["dataset"] not in HELD_OUT),
        ("held out", lambda r: r["dataset"] in HELD_OUT),
    ):
        chosen = [r for r in rows if keep(r)]
        if chosen:
            print(f"\n{title}:\n\n{render(chosen)}")
