"""LogME: the score orders features by how well they explain the labels, and is a true maximum."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.advise import log_evidence, logme_score


def _blobs(n_per_class: int, dims: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    centres = rng.normal(size=(4, dims)) * separation
    return centres[labels] + rng.normal(size=(len(labels), dims)), labels


def test_separable_features_score_higher_than_shuffled_labels():
    features, labels = _blobs(50, 16, separation=3.0)
    shuffled = np.random.default_rng(1).permutation(labels)
    assert logme_score(features, labels) > logme_score(features, shuffled) + 0.1


def test_score_rises_with_class_separation():
    scores = [logme_score(*_blobs(50, 16, separation=s)) for s in (0.0, 1.0, 3.0)]
    assert scores[0] < scores[1] < scores[2]


@pytest.mark.parametrize("dims", [8, 300])  # fewer and more dimensions than images: both spectral paths
def test_score_is_the_maximum_of_the_closed_form_evidence(dims):
    features, labels = _blobs(30, dims, separation=2.0)
    target = (labels == 0).astype(float)
    # LogME of a two-class problem averages two columns that are mirror images (y and 1 - y), so compare
    # against a single column through a binary label vector with the same evidence on both columns.
    score = logme_score(features, labels == 0)
    n = len(labels)
    for alpha, beta in [(0.01, 0.1), (1.0, 1.0), (10.0, 5.0), (0.1, 20.0)]:
        other = (log_evidence(features, target, alpha, beta) + log_evidence(features, 1 - target, alpha, beta)) / 2
        assert score >= other / n - 1e-6


def test_classes_absent_from_the_labels_are_ignored():
    features, labels = _blobs(20, 8, separation=2.0)
    assert logme_score(features, labels) == pytest.approx(logme_score(features, labels + 5))


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (np.zeros((10, 3)), np.zeros(9, int), "do not match"),
        (np.zeros((1, 3)), np.zeros(1, int), "at least two images"),
        (np.ones((10, 3)), np.zeros(10, int), "at least two classes"),
    ],
)
def test_bad_inputs_are_clear_errors(features, labels, message):
    with pytest.raises(ValueError, match=message):
        logme_score(features, labels)
