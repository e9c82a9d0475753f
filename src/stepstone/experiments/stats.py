"""Paired bootstrap confidence intervals of a gain between two setups (issue 18).

Every metric stepstone reports is a function of per-example statistics summed over the evaluation examples:
accuracy of (correct, 1), entity F1 of (true positives, false positives, false negatives), token accuracy of
(correct tokens, tokens), QA exact match / F1 of (score, 1). So a resample of the examples is a vector of weights
(how often each example was drawn), and a setup's score on it is `metric(weights @ statistics)`.

The interval of a gain B - A is the paired bootstrap (Koehn 2004; Dror et al. 2018): each resample draws the
examples of every language once, with replacement, and applies the same draw to both setups and every seed (the
examples are the same, in the same order, in every cell of a target), so the noise the two setups share cancels.
A setup's score on a resample is its metric per language, averaged over its seeds ("pooling seeds"), then over
the languages (the zero-shot mean). The gain's 95% interval is the 2.5th and 97.5th percentile of the resampled
gains; the gain is significant where the interval excludes 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

Metric = Callable[[np.ndarray], np.ndarray]  # summed statistics [..., k] -> score [...]


def accuracy(sums: np.ndarray) -> np.ndarray:
    """(correct, examples) -> percent."""
    return 100.0 * sums[..., 0] / np.maximum(sums[..., 1], 1e-12)


def f1(sums: np.ndarray) -> np.ndarray:
    """(true positives, false positives, false negatives) -> F1 in percent (0 where there is nothing)."""
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    return 100.0 * 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12)


@dataclass(frozen=True)
class Gain:
    """B - A on the data as it is (`gain`), its paired bootstrap interval at `level`, and whether the interval
    excludes 0."""

    gain: float
    low: float
    high: float
    level: float
    samples: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {"gain": self.gain, "low": self.low, "high": self.high, "level": self.level, "samples": self.samples,
                "significant": self.significant}


def _stack(seeds: Sequence[np.ndarray], language: str, setup: str) -> np.ndarray:
    arrays = [np.asarray(s, dtype=np.float64) for s in seeds]
    if not arrays:
        raise ValueError(f"{setup} has no seeds in language '{language}'")
    if any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"{setup} in language '{language}': every seed needs the same [examples, statistics] "
                         f"shape (got {[a.shape for a in arrays]})")
    return np.stack(arrays)  # [seeds, examples, k]


def paired_bootstrap(a: Mapping[str, Sequence[np.ndarray]], b: Mapping[str, Sequence[np.ndarray]], metric: Metric,
                     *, samples: int = 1000, level: float = 0.95, seed: int = 0) -> Gain:
    """The gain of setup `b` over setup `a`: per language, each setup's per-seed [examples, statistics] arrays
    (the same examples in the same order everywhere; the seeds of a and b need not be as many). Deterministic for
    a given `seed`."""
    if sorted(a) != sorted(b) or not a:
        raise ValueError(f"both setups need the same languages (a: {sorted(a)}, b: {sorted(b)})")
    if samples < 1 or not 0 < level < 1:
        raise ValueError(f"samples must be >= 1 and level in (0, 1) (got {samples}, {level})")
    rng = np.random.default_rng(seed)
    full_a, full_b = [], []
    draws_a, draws_b = [], []
    for language in sorted(a):
        stats_a, stats_b = _stack(a[language], language, "a"), _stack(b[language], language, "b")
        n = stats_a.shape[1]
        if stats_b.shape[1:] != stats_a.shape[1:]:
            raise ValueError(f"language '{language}': a and b scored different examples ({stats_a.shape[1:]} vs "
                             f"{stats_b.shape[1:]} [examples, statistics])")
        full_a.append(metric(stats_a.sum(axis=1)).mean())
        full_b.append(metric(stats_b.sum(axis=1)).mean())
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)  # [samples, examples]
        # [samples, seeds, k]: each resample's summed statistics, the same draw for every seed of both setups
        draws_a.append(metric(np.einsum("re,sek->rsk", weights, stats_a)).mean(axis=1))
        draws_b.append(metric(np.einsum("re,sek->rsk", weights, stats_b)).mean(axis=1))
    gains = np.mean(draws_b, axis=0) - np.mean(draws_a, axis=0)  # [samples]: mean over languages
    tail = (1 - level) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    return Gain(float(np.mean(full_b) - np.mean(full_a)), float(low), float(high), level, samples)
