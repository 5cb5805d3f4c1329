"""Command-line options that name the data, shared by train, compare, evaluate and advise."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transferkit.cli._argtypes import positive_int

if TYPE_CHECKING:  # the data package (numpy, PIL) loads when a command reads data, not for --help
    from transferkit.data import ImageSource

__all__ = ["DataSources", "add_data_arguments", "load_sources", "source_from_path"]


@dataclass
class DataSources:
    """The training data and, when given, separate validation and test data."""

    train: ImageSource
    val: ImageSource | None
    test: ImageSource | None


def add_data_arguments(parser: argparse.ArgumentParser, *, files_only: bool = False) -> None:
    """DATA, --val/--test, the list-file options and --root; unless `files_only`, also Fashion-MNIST and subsets."""
    group = parser.add_argument_group("data")
    group.add_argument("data", nargs="?", help="image folder (one sub-folder per class) or a list file")
    val_help, test_help = "validation folder or list file", "test folder or list file"
    if not files_only:
        val_help += " (default: a stratified split of DATA)"
        test_help += ", evaluated once with the best checkpoint"
    group.add_argument("--val", help=val_help)
    group.add_argument("--test", help=test_help)
    group.add_argument("--train-list", help="list file of 'relative/path label' lines")
    group.add_argument("--val-list", help="validation list file")
    group.add_argument("--test-list", help="test list file")
    group.add_argument("--root", help="folder the list files' paths are relative to (default: the list's folder)")
    group.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="read list-file paths that lead outside --root (../.., absolute paths elsewhere); refused by default",
    )
    if files_only:
        return
    group.add_argument("--fashion-mnist", metavar="DIR", help="use Fashion-MNIST IDX files from DIR (train + test)")
    group.add_argument(
        "--per-class", type=positive_int, help="keep at most this many training images per class (seeded)"
    )
    group.add_argument("--test-limit", type=positive_int, help="evaluate on at most this many test images (stratified)")


def source_from_path(
    path: str | Path, root: str | None = None, classes: list[str] | None = None, *, outside_root: bool = False
) -> ImageSource:
    """A folder of class folders, or a list file (`outside_root`: its paths may lead outside the root)."""
    from transferkit.data import from_folder, from_list

    path = Path(path)
    if path.is_file():
        return from_list(path, root=root, classes=classes, allow_outside_root=outside_root)
    return from_folder(path)


def load_sources(args: argparse.Namespace, seed: int = 0) -> DataSources:
    """Read the data options into sources; raises DataError or SystemExit with a usage message."""
    from transferkit.data import fashion_mnist, from_list, per_class_subset

    if args.fashion_mnist:
        train = fashion_mnist(args.fashion_mnist, "train")
        test = fashion_mnist(args.fashion_mnist, "test")
        val = None
    elif args.train_list:
        outside = {"root": args.root, "allow_outside_root": args.allow_outside_root}
        train = from_list(args.train_list, **outside)
        val = from_list(args.val_list, classes=train.classes, **outside) if args.val_list else None
        test = from_list(args.test_list, classes=train.classes, **outside) if args.test_list else None
    elif args.data:
        outside = {"outside_root": args.allow_outside_root}
        train = source_from_path(args.data, args.root, **outside)
        val = source_from_path(args.val, args.root, train.classes, **outside) if args.val else None
        test = source_from_path(args.test, args.root, train.classes, **outside) if args.test else None
    else:
        raise SystemExit("no data given: pass an image folder, --train-list FILE, or --fashion-mnist DIR")
    for name, other in (("validation", val), ("test", test)):
        if other is not None and list(other.classes) != list(train.classes):
            raise SystemExit(f"the {name} classes {other.classes} differ from the training classes {train.classes}")
    if args.per_class:
        train = train.subset(per_class_subset(train.labels, args.per_class, seed))
    if test is not None and args.test_limit and args.test_limit < len(test):
        per_class = max(1, args.test_limit // len(test.classes))
        test = test.subset(per_class_subset(test.labels, per_class, seed))
    return DataSources(train, val, test)
