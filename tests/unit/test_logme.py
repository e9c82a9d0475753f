"""LogME (stepstone.ranking.logme): the evidence formula by hand, the fixed point it stops at, that it is a
maximum, and that features which carry the labels score higher than features which do not."""
from __future__ import annotations

import math

import numpy as np
import pytest

from stepstone.ranking.logme import EPSILON, evidence, log_evidence, logme


def test_the_evidence_of_a_two_example_case_by_hand():
    """F = [[1], [1]], y = [1, 1], alpha = beta = 1: F^T F = 2, A = 3, m = beta A^-1 F^T y = 2/3,
    |y - F m|^2 = 2 (1/3)^2 = 2/9, |m|^2 = 4/9; log p = 0 + 0 - 1/2 log 3 - 1/9 - 2/9 - log 2 pi."""
    expected = -0.5 * math.log(3) - 1 / 3 - math.log(2 * math.pi)
    assert log_evidence(np.array([[1.0], [1.0]]), np.array([1.0, 1.0]), 1.0, 1.0) == pytest.approx(expected, abs=1e-12)


def _direct(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The same evidence with an explicit matrix A and its log-determinant (no eigenbasis)."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * ((y - f @ m) ** 2).sum() - alpha / 2 * m @ m - 0.5 * np.linalg.slogdet(a)[1])


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(60, 5))
    y = f @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + 0.3 * rng.normal(size=60)
    return f, y


def test_the_eigenbasis_computes_the_direct_evidence(data):
    f, y = data
    for alpha, beta in ((1.0, 1.0), (0.3, 7.0), (20.0, 0.05)):
        assert log_evidence(f, y, alpha, beta) == pytest.approx(_direct(f, y, alpha, beta), abs=1e-9)


def test_it_stops_at_the_fixed_point_and_that_is_a_maximum(data):
    f, y = data
    found = evidence(f, y, tol=1e-12, max_iter=500)
    s = np.linalg.eigvalsh(f.T @ f)
    gamma = (found.beta * s / (found.alpha + found.beta * s)).sum()
    m = found.beta * np.linalg.solve(found.alpha * np.eye(5) + found.beta * f.T @ f, f.T @ y)
    # MacKay's updates (with the reference's EPSILON guard) leave it where it is
    assert found.alpha == pytest.approx(gamma / (m @ m + EPSILON), rel=1e-8)
    assert found.beta == pytest.approx((len(y) - gamma) / (((y - f @ m) ** 2).sum() + EPSILON), rel=1e-8)
    assert found.iterations < 500
    best = found.value * len(y)
    for alpha, beta in ((found.alpha * 1.2, found.beta), (found.alpha / 1.2, found.beta),
                        (found.alpha, found.beta * 1.2), (found.alpha, found.beta / 1.2)):
        assert log_evidence(f, y, alpha, beta) < best
    # the reference's stopping rule (1%, at most 11 steps) lands close to it
    quick = evidence(f, y)
    assert quick.iterations <= 11 and quick.value == pytest.approx(found.value, abs=1e-3)


def test_features_that_carry_the_labels_win():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=300)
    informative = np.eye(3)[labels] * 2.0 + 0.5 * rng.normal(size=(300, 3))
    noise = rng.normal(size=(300, 3))
    scores = {name: logme(f, labels) for name, f in (("informative", informative), ("noise", noise),
                                                      ("both", np.hstack([noise, informative])))}
    assert scores["informative"] > scores["noise"] + 0.2
    assert scores["both"] > scores["noise"] + 0.2
    # LogME averages the one-vs-rest evidences of the classes present
    per_class = [evidence(informative, (labels == k).astype(float)).value for k in range(3)]
    assert scores["informative"] == pytest.approx(sum(per_class) / 3, abs=1e-12)


@pytest.mark.parametrize("features, labels, message", [
    (np.zeros((3, 2)), np.array([0, 1]), r"^labels must be one per example: 3 examples, labels of shape \(2,\)$"),
    (np.zeros((2, 2)), np.array([0.5, 1.0]), r"^labels must be class indices \(integers >= 0\)$"),
    (np.zeros((2, 2)), np.array([0, -1]), r"^labels must be class indices \(integers >= 0\)$"),
    (np.zeros(3), np.array([0, 1, 0]), r"^features must be a non-empty N x D matrix, got shape \(3,\)$"),
    (np.array([[np.nan, 1.0]]), np.array([0]), r"^features must be finite$"),
])
def test_bad_inputs_are_refused(features, labels, message):
    with pytest.raises(ValueError, match=message):
        logme(features, labels)
