import numpy as np
import pytest

from transferkit.data import DataError, per_class_subset, stratified_folds, stratified_split

LABELS = np.repeat(np.arange(4), [50, 30, 10, 10])


def test_stratified_split_keeps_class_proportions():
    train, val = stratified_split(LABELS, val_fraction=0.2, seed=0)
    assert np.array_equal(np.bincount(LABELS[val]), [10, 6, 2, 2])
    assert np.array_equal(np.bincount(LABELS[train]), [40, 24, 8, 8])


def test_stratified_split_is_disjoint_complete_sorted_and_seeded():
    train, val = stratified_split(LABELS, seed=3)
    assert not set(train) & set(val)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(LABELS)))
    assert np.array_equal(train, np.sort(train)) and np.array_equal(val, np.sort(val))
    assert train.dtype == val.dtype == np.int64
    again = stratified_split(LABELS, seed=3)
    assert np.array_equal(val, again[1])
    assert not np.array_equal(val, stratified_split(LABELS, seed=4)[1])


def test_stratified_split_names_a_class_with_one_image():
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(DataError, match=r"class 2 has 1.*--val"):
        stratified_split(labels)


def test_stratified_split_too_small_for_the_classes():
    labels = np.repeat(np.arange(5), 2)
    with pytest.raises(DataError, match="too few for 5 classes"):
        stratified_split(labels, val_fraction=0.2)


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split(LABELS, val_fraction=1.0)


def test_per_class_subset():
    picked = per_class_subset(LABELS, per_class=20, seed=1)
    assert np.array_equal(np.bincount(LABELS[picked]), [20, 20, 10, 10])
    assert np.array_equal(picked, np.sort(picked))
    assert len(set(picked)) == len(picked)
    assert np.array_equal(picked, per_class_subset(LABELS, per_class=20, seed=1))
    assert not np.array_equal(picked, per_class_subset(LABELS, per_class=20, seed=2))


def test_stratified_folds_partition_and_stratify():
    folds = stratified_folds(LABELS, k=5, seed=0)
    assert len(folds) == 5
    vals = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(vals), np.arange(len(LABELS)))
    for train, val in folds:
        assert not set(train) & set(val)
        assert len(train) + len(val) == len(LABELS)
        assert np.array_equal(np.bincount(LABELS[val]), [10, 6, 2, 2])
    again = stratified_folds(LABELS, k=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))


def test_stratified_folds_names_a_class_smaller_than_k():
    with pytest.raises(DataError, match="class 3 has 10.*fewer folds"):
        stratified_folds(LABELS, k=11)
