"""Seeded, stratified splits of labelled images: train/validation, per-class subsets, k folds."""

from __future__ import annotations

import math

import numpy as np

from transferkit.data.errors import DataError

__all__ = ["per_class_subset", "stratified_folds", "stratified_split"]


def stratified_split(
    labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0, *, names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Splits images into training and validation sets with the same class proportions.

    Args:
        labels: The class index of each image.
        names: The class names, for messages (a class too small to split is named, not numbered).
        val_fraction: The share of images to hold out, between 0 and 1.
        seed: Fixes which images are held out.

    Returns:
        Sorted int64 indices of the training and validation images; together they cover every image once.

    Raises:
        ValueError: ``val_fraction`` is not between 0 and 1.
        DataError: A class has fewer than 2 images, or the split leaves a side with fewer images
            than there are classes.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    advice = "a stratified validation split needs at least 2 per class; add images or give a validation set (--val)"
    _require_per_class(classes, counts, 2, advice, names)
    # sklearn rounds the held-out count up; check both sides here to say what to change.
    n_val = math.ceil(val_fraction * len(labels))
    if min(n_val, len(labels) - n_val) < len(classes):
        raise DataError(
            f"a {val_fraction:g} validation split of {len(labels)} images leaves {n_val} for validation and "
            f"{len(labels) - n_val} for training, too few for {len(classes)} classes; change the fraction or add images"
        )
    from sklearn.model_selection import train_test_split  # scikit-learn takes a second to import

    train, val = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed, shuffle=True
    )
    return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)


def per_class_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Picks up to ``per_class`` images of each class at random; smaller classes are kept whole.

    Args:
        labels: The class index of each image.
        per_class: The most images to keep from each class, at least 1.
        seed: Fixes which images are picked.

    Returns:
        Sorted int64 indices of the picked images.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) > per_class:
            members = rng.choice(members, size=per_class, replace=False)
        picked.append(members)
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.empty(0, dtype=np.int64)


def stratified_folds(
    labels: np.ndarray, k: int, seed: int = 0, *, names: list[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits images into ``k`` shuffled, stratified folds for cross-validation.

    Args:
        labels: The class index of each image.
        names: The class names, for messages.
        k: The number of folds, at least 2.
        seed: Fixes the shuffling.

    Returns:
        For each fold, sorted int64 indices of its training and validation images; the validation
        sets of the folds together cover every image once.

    Raises:
        ValueError: ``k`` is less than 2.
        DataError: A class has fewer than ``k`` images, so some folds would not validate it.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    advice = f"{k}-fold cross-validation needs at least {k} per class; use fewer folds or add images"
    _require_per_class(classes, counts, k, advice, names)
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        (np.sort(train).astype(np.int64), np.sort(val).astype(np.int64))
        for train, val in folds.split(np.zeros(len(labels)), labels)
    ]


def _require_per_class(
    classes: np.ndarray, counts: np.ndarray, minimum: int, advice: str, names: list[str] | None = None
) -> None:
    def name(c) -> str:
        return f"class {names[c]!r}" if names is not None and 0 <= c < len(names) else f"class {c}"

    small = [
        f"{name(c)} has {n} image{'s' if n != 1 else ''}" for c, n in zip(classes, counts, strict=True) if n < minimum
    ]
    if small:
        raise DataError(f"too few images: {', '.join(small)}; {advice}")
