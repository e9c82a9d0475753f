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

That interval holds the training runs fixed: it says how much the choice of evaluation examples leaves uncertain,
not how much another seed would move the score. With `seeds=True` each resample also draws every setup's seeds
with replacement (one draw per setup, the same for all its languages, independent between setups: a two-level
bootstrap), so the interval covers seed-to-seed variation too; it needs at least two seeds a setup to mean
anything (with three it is coarse: ten distinct seed draws), and is wider.
"""
from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import StepstoneError

Metric = Callable[[np.ndarray], np.ndarray]  # summed statistics [..., k] -> score [...]


def accuracy(sums: np.ndarray) -> np.ndarray:
    """(correct, examples) -> percent."""
    return 100.0 * sums[..., 0] / np.maximum(sums[..., 1], 1e-12)


def f1(sums: np.ndarray) -> np.ndarray:
    """(true positives, false positives, false negatives) -> F1 in percent (0 where there is nothing)."""
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    return 100.0 * 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12)


METRICS: dict[str, Metric] = {"ratio": accuracy, "f1": f1}  # stepstone.metrics.Metric.statistic -> metric

# The per-example statistics of a cell, as cells.jsonl stores them: "<dtype>:<examples>x<k>:<base64 of the
# zlib-compressed little-endian array>". Counts are stored as the smallest unsigned integer type that holds them
# (accuracy's 0/1 in one byte, so 1,000 examples take ~200 characters), anything else (QA F1) as float64.
_INTEGER_TYPES = ("u1", "u2", "u4")


def encode(statistics: np.ndarray) -> str:
    """One language's [examples, k] statistics as a short string (exactly `decode`d back)."""
    values = np.asarray(statistics, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"statistics must be [examples, k] (got shape {values.shape})")
    dtype = "<f8"
    if values.size == 0 or (np.all(values >= 0) and np.all(values == np.round(values))):
        top = values.max(initial=0)
        dtype = next((f"<{t}" for t in _INTEGER_TYPES if top <= np.iinfo(np.dtype(t)).max), dtype)
    data = base64.b64encode(zlib.compress(values.astype(dtype).tobytes(), 9)).decode("ascii")
    return f"{dtype[1:]}:{values.shape[0]}x{values.shape[1]}:{data}"


def decode(text: str, where: str = "statistics") -> np.ndarray:
    """An `encode`d string back to its float64 [examples, k] array; a malformed one is a StepstoneError naming
    `where`."""
    try:
        dtype, shape, data = text.split(":")
        rows, k = (int(x) for x in shape.split("x"))
        values = np.frombuffer(zlib.decompress(base64.b64decode(data, validate=True)), dtype=f"<{dtype}")
        return values.astype(np.float64).reshape(rows, k)
    except (ValueError, TypeError, AttributeError, zlib.error) as err:
        raise StepstoneError(f"{where}: not per-example statistics as the grid writes them ({err})") from None


@dataclass(frozen=True)
class Gain:
    """A number on the data as it is (`gain`: a gain B - A, a drop, or one setup's score), its bootstrap interval
    at `level`, and whether the interval excludes 0 (for a score: meaningless, never asked)."""

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


Setup = Mapping[str, Sequence[np.ndarray]]  # language -> one [examples, statistics] array per seed


def _stack(seeds: Sequence[np.ndarray], language: str, setup: str) -> np.ndarray:
    arrays = [np.asarray(s, dtype=np.float64) for s in seeds]
    if not arrays:
        raise ValueError(f"{setup} has no seeds in language '{language}'")
    if any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"{setup} in language '{language}': every seed needs the same [examples, statistics] "
                         f"shape (got {[a.shape for a in arrays]})")
    return np.stack(arrays)  # [seeds, examples, k]


def resample(setups: Sequence[Setup], metric: Metric, *, samples: int = 1000, seed: int = 0,
             seeds: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every setup's score on the data as it is ([setups]) and on each of `samples` resamples ([setups, samples]):
    per language the mean over its seeds of the metric, then the mean over the languages. Each resample draws
    the examples of every language once, with replacement, for all the setups and seeds alike (the same examples
    in the same order everywhere: one target's cells), so differences of the rows are paired. `seeds`: each
    resample also draws each setup's seeds with replacement (the same draw in every language; the example draws
    stay what they are without it). Deterministic for a given `seed`."""
    names = [f"setup {i}" if len(setups) > 2 else "ab"[i] for i in range(len(setups))]
    languages = sorted(setups[0]) if setups else []
    if not languages or any(sorted(s) != languages for s in setups):
        raise ValueError("the setups need the same languages (" + "; ".join(
            f"{name}: {sorted(s)}" for name, s in zip(names, setups)) + ")")
    if samples < 1:
        raise ValueError(f"samples must be >= 1 (got {samples})")
    rng = np.random.default_rng(seed)
    point, draws = np.zeros((len(setups), len(languages))), np.zeros((len(setups), len(languages), samples))
    counts = [len(s[languages[0]]) for s in setups]
    seed_rng = np.random.default_rng((seed, 1))  # its own stream: the example draws do not depend on `seeds`
    # [samples, seeds] per setup: how often each seed is drawn, as weights summing to 1 (uniform without `seeds`)
    seed_weights = [seed_rng.multinomial(k, np.full(k, 1.0 / k), size=samples) / k if seeds and k else
                    np.full((samples, k), 1.0 / max(k, 1)) for k in counts]
    for j, language in enumerate(languages):
        stacked = [_stack(s[language], language, name) for s, name in zip(setups, names)]
        if any(x.shape[0] != k for x, k in zip(stacked, counts)):
            raise ValueError(f"language '{language}': a setup has another number of seeds than in "
                             f"'{languages[0]}' ({[x.shape[0] for x in stacked]} vs {counts})")
        if any(x.shape[1:] != stacked[0].shape[1:] for x in stacked):
            raise ValueError(f"language '{language}': the setups scored different examples ("
                             + " vs ".join(str(x.shape[1:]) for x in stacked) + " [examples, statistics])")
        n = stacked[0].shape[1]
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)  # [samples, examples]
        for i, x in enumerate(stacked):
            point[i, j] = metric(x.sum(axis=1)).mean()
            # [samples, seeds, k]: each resample's summed statistics, the same draw for every seed and setup
            draws[i, j] = (metric(np.einsum("re,sek->rsk", weights, x)) * seed_weights[i]).sum(axis=1)
    return point.mean(axis=1), draws.mean(axis=1)


def interval(value: float, draws: np.ndarray, level: float = 0.95) -> Gain:
    """`value` with the percentile interval of its resampled `draws` at `level`."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Gain(float(value), float(low), float(high), level, int(np.size(draws)))


def score_interval(a: Setup, metric: Metric, *, samples: int = 1000, level: float = 0.95, seed: int = 0) -> Gain:
    """One setup's zero-shot score and its bootstrap interval (the examples resampled, seeds pooled)."""
    point, draws = resample([a], metric, samples=samples, seed=seed)
    return interval(point[0], draws[0], level)


def paired_bootstrap(a: Setup, b: Setup, metric: Metric, *, samples: int = 1000, level: float = 0.95,
                     seed: int = 0, seeds: bool = False) -> Gain:
    """The gain of setup `b` over setup `a`: per language, each setup's per-seed [examples, statistics] arrays
    (the same examples in the same order everywhere; the seeds of a and b need not be as many). `seeds`: the
    seeds are resampled too (`resample`). Deterministic for a given `seed`."""
    if not 0 < level < 1:
        raise ValueError(f"samples must be >= 1 and level in (0, 1) (got {samples}, {level})")
    point, draws = resample([a, b], metric, samples=samples, seed=seed, seeds=seeds)
    return interval(point[1] - point[0], draws[1] - draws[0], level)
