"""LogME: how well frozen features explain the labels, as Bayesian evidence (You et al., ICML 2021).

For each class the one-hot column ``y`` is modelled as a linear function of the features ``F`` (n x D)
with a Gaussian prior on the weights, ``w ~ N(0, 1/alpha I)``, and Gaussian noise, ``y ~ N(F w, 1/beta)``.
Integrating the weights out gives the evidence

    log p(y | F, alpha, beta) = n/2 log beta + D/2 log alpha - n/2 log 2 pi
                                - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log |A|,
    A = alpha I + beta F^T F,   m = beta A^-1 F^T y.

LogME maximises it over alpha and beta with MacKay's fixed-point updates

    gamma = sum_i beta s_i^2 / (alpha + beta s_i^2),   alpha = gamma / |m|^2,   beta = (n - gamma) / |F m - y|^2,

where s_i are the singular values of F, and reports the maximum divided by n, averaged over classes.
With one SVD of F every quantity is a sum over singular values, so each iteration costs O(min(n, D))
per class: the SVD dominates.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["log_evidence", "logme_score"]

_MAX_ITER = 100
_TOL = 1e-4
"""Relative change of alpha/beta that ends the fixed-point iteration (the paper iterates to ~1e-3)."""
_EPS = 1e-12


def logme_score(features: np.ndarray, labels: np.ndarray) -> float:
    """The LogME transferability score of ``features`` for classifying ``labels``: higher is better.

    Args:
        features: Pooled features, shape (n, D).
        labels: Integer class labels, shape (n,). Classes absent from ``labels`` are ignored.

    Returns:
        The maximised log evidence per image, averaged over the one-hot target of every class.

    Raises:
        ValueError: Shapes disagree, there are fewer than two images, or fewer than two classes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> labels = np.repeat([0, 1], 50)
        >>> separable = np.eye(2)[labels] * 3 + rng.normal(size=(100, 2))
        >>> logme_score(separable, labels) > logme_score(rng.normal(size=(100, 2)), labels)
        True
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if f.ndim != 2 or f.shape[0] != y.shape[0]:
        raise ValueError(f"features {f.shape} and labels {y.shape} do not match: expected (n, D) and (n,)")
    if f.shape[0] < 2:
        raise ValueError("LogME needs at least two images")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("LogME needs at least two classes")
    targets = (y[:, None] == classes[None, :]).astype(np.float64)
    evidence, _, _ = _maximised_evidence(f, targets)
    return float(np.mean(evidence))


def log_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """The log evidence of one target column at fixed ``alpha`` and ``beta``, from the closed form.

    Computed directly from ``A`` (no SVD); used to check the fast path and to explain the score.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    residual = float(np.sum((f @ m - y) ** 2))
    _, logdet = np.linalg.slogdet(a)
    return float(
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * float(m @ m)
        - logdet / 2
    )


def _spectrum(f: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values s_i^2 of F (the non-zero ones) and the projections z = U^T y of each target.

    The eigendecomposition of the smaller Gram matrix (F^T F or F F^T) gives the same spectrum as a thin
    SVD at a fraction of the cost; directions with a numerically zero singular value carry no signal and
    are dropped (the evidence counts them as prior-only directions).
    """
    n, d = f.shape
    if d <= n:
        s2, v = np.linalg.eigh(f.T @ f)
        keep = s2 > s2.max() * 1e-10
        s2, v = s2[keep], v[:, keep]
        z = (v.T @ (f.T @ targets)) / np.sqrt(s2)[:, None]
    else:
        s2, u = np.linalg.eigh(f @ f.T)
        keep = s2 > s2.max() * 1e-10
        s2, u = s2[keep], u[:, keep]
        z = u.T @ targets
    return s2, z


def _maximised_evidence(f: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-point maximisation for every target column at once: evidence / n, alpha and beta per column."""
    n, d = f.shape
    s2, z = _spectrum(f, targets)
    s = np.sqrt(s2)
    z2 = z**2
    # The part of y outside the column space of F is residual whatever the weights are.
    outside = np.maximum(np.sum(targets**2, axis=0) - np.sum(z2, axis=0), 0.0)
    n_cols = targets.shape[1]
    alpha, beta = np.ones(n_cols), np.ones(n_cols)
    for _ in range(_MAX_ITER):
        denom = alpha[None, :] + beta[None, :] * s2[:, None]  # (r, C)
        gamma = np.sum(beta[None, :] * s2[:, None] / denom, axis=0)
        m2 = np.sum((beta[None, :] * s[:, None]) ** 2 * z2 / denom**2, axis=0)
        res2 = np.sum((alpha[None, :] / denom) ** 2 * z2, axis=0) + outside
        new_alpha = gamma / np.maximum(m2, _EPS)
        new_beta = np.maximum(n - gamma, _EPS) / np.maximum(res2, _EPS)
        converged = np.all(np.abs(new_alpha - alpha) <= _TOL * alpha) and np.all(np.abs(new_beta - beta) <= _TOL * beta)
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    denom = alpha[None, :] + beta[None, :] * s2[:, None]
    m2 = np.sum((beta[None, :] * s[:, None]) ** 2 * z2 / denom**2, axis=0)
    res2 = np.sum((alpha[None, :] / denom) ** 2 * z2, axis=0) + outside
    # log|A|: the r singular directions, plus D - r directions where A is alpha alone.
    logdet = np.sum(np.log(denom), axis=0) + (d - len(s)) * np.log(alpha)
    evidence = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * res2
        - alpha / 2 * m2
        - logdet / 2
    )
    return evidence / n, alpha, beta
