"""The paired bootstrap of a gain (experiments/stats.py) on cases with a known answer."""
from __future__ import annotations

import numpy as np
import pytest

from stepstone.errors import StepstoneError
from stepstone.experiments.stats import accuracy, decode, encode, f1, paired_bootstrap, resample


def correct(flags) -> np.ndarray:
    """Per-example accuracy statistics (correct, 1)."""
    flags = np.asarray(flags, dtype=float)
    return np.stack([flags, np.ones_like(flags)], axis=1)


def test_no_difference_is_a_zero_gain_with_a_zero_interval():
    a = {"de": [correct([1, 0, 1, 1, 0] * 20)]}
    gain = paired_bootstrap(a, a, accuracy, samples=200)
    assert (gain.gain, gain.low, gain.high, gain.significant) == (0.0, 0.0, 0.0, False)


def test_all_wrong_to_all_right_is_100_points_for_sure():
    gain = paired_bootstrap({"de": [correct([0] * 50)]}, {"de": [correct([1] * 50)]}, accuracy, samples=200)
    assert (gain.gain, gain.low, gain.high, gain.significant) == (100.0, 100.0, 100.0, True)


def flips(better: int, worse: int, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A and B agree on every example but `better` (B right, A wrong) and `worse` (A right, B wrong)."""
    a = np.array([i % 2 for i in range(n)], dtype=float)
    b = a.copy()
    wrong_a = np.flatnonzero(a == 0)[:better]
    right_a = np.flatnonzero(a == 1)[:worse]
    b[wrong_a], b[right_a] = 1, 0
    return correct(a), correct(b)


def test_the_interval_matches_the_normal_approximation_of_the_paired_difference():
    # d = b - a: +1 on 60 examples, -1 on 30, 0 elsewhere: mean 0.03, sd sqrt(0.09 - 0.03^2) / sqrt(1000) = 0.944
    # points; 95%: 3.0 +- 1.96 x 0.944 = [1.15, 4.85]
    a, b = flips(60, 30)
    gain = paired_bootstrap({"de": [a]}, {"de": [b]}, accuracy, samples=4000, seed=1)
    assert gain.gain == pytest.approx(3.0)
    assert gain.low == pytest.approx(1.15, abs=0.25) and gain.high == pytest.approx(4.85, abs=0.25)
    assert gain.significant
    even = paired_bootstrap({"de": [flips(30, 30)[0]]}, {"de": [flips(30, 30)[1]]}, accuracy, samples=4000, seed=1)
    assert even.gain == 0.0 and even.low < 0 < even.high and not even.significant
    # unpaired (B's examples in another order) the same scores would look far noisier
    shuffled = paired_bootstrap({"de": [a]}, {"de": [b[np.random.default_rng(0).permutation(len(b))]]}, accuracy,
                                samples=4000, seed=1)
    assert shuffled.high - shuffled.low > 2 * (gain.high - gain.low)


def test_seeds_are_pooled_and_languages_averaged():
    a = {"de": [correct([0] * 10)], "fr": [correct([0] * 10)]}
    b = {"de": [correct([1] * 10), correct([0] * 10)], "fr": [correct([1] * 10)] * 2}  # de: 100 and 0 -> 50
    gain = paired_bootstrap(a, b, accuracy, samples=100)
    assert gain.gain == 75.0 and gain.low == gain.high == 75.0


def test_resampling_the_seeds_too_covers_the_spread_between_training_runs():
    # A's two seeds score 0 and 100 on every example, B's both 100: the examples carry no uncertainty, the seeds
    # all of it. Held fixed, the gain is 50 for sure; with the seeds drawn too, A is 0, 50 or 100 (1/4, 1/2, 1/4)
    a = {"de": [correct([0] * 20), correct([1] * 20)], "fr": [correct([0] * 20), correct([1] * 20)]}
    b = {"de": [correct([1] * 20)] * 2, "fr": [correct([1] * 20)] * 2}
    fixed = paired_bootstrap(a, b, accuracy, samples=400)
    assert (fixed.gain, fixed.low, fixed.high, fixed.significant) == (50.0, 50.0, 50.0, True)
    both = paired_bootstrap(a, b, accuracy, samples=400, seeds=True)
    assert (both.gain, both.low, both.high, both.significant) == (50.0, 0.0, 100.0, False)
    _, draws = resample([a], accuracy, samples=4000, seeds=True)
    values, counts = np.unique(draws[0], return_counts=True)  # one seed draw for both languages: no 25s or 75s
    assert values.tolist() == [0.0, 50.0, 100.0]
    assert (counts / 4000).tolist() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    # seeds that agree leave the interval as it was, and the example draws do not depend on `seeds`
    x, y = flips(60, 30)
    same = paired_bootstrap({"de": [x, x]}, {"de": [y, y]}, accuracy, samples=500, seed=3, seeds=True)
    assert same == paired_bootstrap({"de": [x, x]}, {"de": [y, y]}, accuracy, samples=500, seed=3)
    with pytest.raises(ValueError, match="another number of seeds"):
        resample([{"de": [x, x], "fr": [x]}], accuracy, seeds=True)


def test_f1_from_summed_counts():
    assert f1(np.array([8.0, 2.0, 2.0])) == pytest.approx(80.0)
    assert f1(np.array([0.0, 0.0, 0.0])) == 0.0
    # entity F1 is not the mean of per-sentence F1s: the counts are summed first
    a = {"en": [np.array([[1.0, 0, 0], [0, 1, 1]])]}
    assert paired_bootstrap(a, a, f1, samples=10).gain == 0.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="same languages"):
        paired_bootstrap({"de": [correct([1])]}, {"fr": [correct([1])]}, accuracy)
    with pytest.raises(ValueError, match="different examples"):
        paired_bootstrap({"de": [correct([1, 0])]}, {"de": [correct([1])]}, accuracy)
    with pytest.raises(ValueError, match="same \\[examples, statistics\\] shape"):
        paired_bootstrap({"de": [correct([1, 0]), correct([1])]}, {"de": [correct([1, 0])]}, accuracy)


# --- the per-example statistics as cells.jsonl stores them

@pytest.mark.parametrize("values, dtype", [
    (correct([1, 0, 1, 1, 0] * 200), "u1"),  # accuracy: one byte per value
    (np.array([[3, 0, 300], [0, 2, 1]]), "u2"),  # chunk counts past 255
    (np.array([[0.8, 1.0], [1 / 3, 1.0], [0.0, 1.0]]), "f8"),  # QA F1: exact floats
    (np.zeros((0, 3)), "u1"),
])
def test_statistics_round_trip_exactly_in_the_smallest_type(values, dtype):
    text = encode(values)
    assert text.startswith(f"{dtype}:{values.shape[0]}x{values.shape[1]}:")
    back = decode(text)
    assert back.dtype == np.float64 and back.shape == values.shape and np.array_equal(back, values)


def test_a_thousand_accuracy_flags_take_a_few_hundred_characters():
    flags = correct(np.random.default_rng(0).integers(0, 2, 1000))
    assert len(encode(flags)) < 400


@pytest.mark.parametrize("text", ["", "u1:3x2", "u1:3x2:not-base64!", "u1:3x3:" + encode(correct([1, 0]))[7:],
                                  "q9:1x2:AAAA", None])
def test_malformed_statistics_say_where(text):
    with pytest.raises(StepstoneError, match="^cells.jsonl:4: not per-example statistics"):
        decode(text, "cells.jsonl:4")
