"""LogME (You et al., ICML 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning").

How well do features F (N examples x D dimensions) explain labels y? LogME fits a Bayesian linear model
y = F w + noise, w ~ N(0, 1/alpha I), noise ~ N(0, 1/beta), and returns the log marginal likelihood (the
evidence) per example, with alpha and beta chosen to maximise it by MacKay's fixed-point iteration. For
classification each class is a one-vs-rest 0/1 target and the evidences are averaged. Higher is better; the
value only compares feature sets on the same examples and labels (stepstone's intermediate-task ranking).

The evidence of one target y (A = alpha I + beta F^T F, m = beta A^-1 F^T y):
    log p(y | F, alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2 pi
                                - beta/2 |y - F m|^2 - alpha/2 |m|^2 - 1/2 log det A
and the fixed point: gamma = sum_i beta s_i / (alpha + beta s_i) (s: eigenvalues of F^T F),
alpha = gamma / |m|^2, beta = (N - gamma) / |y - F m|^2. Follows the authors' reference implementation
(github.com/thuml/LogME): one eigendecomposition of F^T F serves every class; at most 11 iterations,
stopping when alpha / beta changes by less than 1%. The returned evidence is the formula above evaluated
exactly at the final alpha, beta (the reference reuses the last iteration's m).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPSILON = 1e-5  # the reference implementation's guard against a zero residual or a zero weight vector


@dataclass(frozen=True)
class Evidence:
    """The maximised evidence of one target: per example, and the alpha, beta it was reached at."""

    value: float  # log p(y | F, alpha, beta) / N
    alpha: float
    beta: float
    iterations: int


def logme(features: np.ndarray, labels: np.ndarray, *, tol: float = 0.01, max_iter: int = 11) -> float:
    """LogME of `features` (N x D) for class `labels` (N integers 0..K-1): the mean over classes of the
    one-vs-rest evidence per example. `tol` / `max_iter`: the fixed-point stopping rule (the reference's
    1% and 11 by default)."""
    f = _checked(features)
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(f):
        raise ValueError(f"labels must be one per example: {len(f)} examples, labels of shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise ValueError("labels must be class indices (integers >= 0)")
    eigen = _eigen(f)
    classes = np.unique(y)
    return float(np.mean([evidence(f, (y == k).astype(np.float64), eigen, tol=tol, max_iter=max_iter).value
                          for k in classes]))


def evidence(features: np.ndarray, target: np.ndarray, eigen: tuple[np.ndarray, np.ndarray] | None = None, *,
             tol: float = 0.01, max_iter: int = 11) -> Evidence:
    """The evidence of one real-valued `target` (N) given `features` (N x D), maximised over alpha, beta.
    `eigen`: the eigendecomposition of F^T F (`_eigen`), when several targets share the features."""
    f = _checked(features)
    y = np.asarray(target, dtype=np.float64)
    n = len(f)
    s, v = eigen if eigen is not None else _eigen(f)
    projected = v.T @ (f.T @ y)  # F^T y in the eigenbasis
    alpha, beta = 1.0, 1.0
    ratio = alpha / beta
    for iteration in range(1, max_iter + 1):
        gamma = float((beta * s / (alpha + beta * s)).sum())
        m = v @ (projected * beta / (alpha + beta * s))
        weight = float(m @ m)
        residual = float(((y - f @ m) ** 2).sum())
        alpha = gamma / (weight + EPSILON)
        beta = (n - gamma) / (residual + EPSILON)
        if abs(alpha / beta - ratio) / ratio < tol:
            break
        ratio = alpha / beta
    return Evidence(log_evidence(f, y, alpha, beta, (s, v)) / n, float(alpha), float(beta), iteration)


def log_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float,
                 eigen: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """log p(y | F, alpha, beta) of the Bayesian linear model (the module docstring's formula), in total."""
    f, y = _checked(features), np.asarray(target, dtype=np.float64)
    n, d = f.shape
    s, v = eigen if eigen is not None else _eigen(f)
    m = v @ ((v.T @ (f.T @ y)) * beta / (alpha + beta * s))  # beta A^-1 F^T y
    weight, residual = float(m @ m), float(((y - f @ m) ** 2).sum())
    return float(d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * s).sum()
                 - beta / 2 * residual - alpha / 2 * weight - n / 2 * np.log(2 * np.pi))


def _eigen(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0: F^T F is positive semi-definite) and eigenvectors of F^T F."""
    s, v = np.linalg.eigh(f.T @ f)
    return np.clip(s, 0.0, None), v


def _checked(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or min(f.shape) < 1:
        raise ValueError(f"features must be a non-empty N x D matrix, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features must be finite")
    return f
