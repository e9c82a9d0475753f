"""Agreement of a ranking with measured gains (stepstone.ranking.agreement), on cases worked out by hand."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from stepstone.ranking.agreement import average_ranks, ndcg_at_k, regret_at_1, spearman, tied_for_top, top

GAINS = {"a": 5.0, "b": 3.0, "c": 1.0, "d": 0.0}
SAME = {"a": 0.9, "b": 0.5, "c": 0.2, "d": -1.0}  # the measured order
REVERSED = {"a": -1.0, "b": 0.2, "c": 0.5, "d": 0.9}
L3 = math.log2(3)


def test_average_ranks_share_ties():
    assert average_ranks([10.0, 20.0, 20.0, 30.0]) == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([3.0, 1.0, 2.0]) == [3.0, 1.0, 2.0]
    assert average_ranks([7.0, 7.0, 7.0]) == [2.0, 2.0, 2.0]
    assert average_ranks([]) == []


def test_spearman_by_hand():
    assert spearman(SAME, GAINS) == 1.0 and spearman(REVERSED, GAINS) == -1.0
    # ranks 4,3,2,1 vs 3,4,1,2: every d = 1, rho = 1 - 6 * 4 / (4 * 15) = 0.6
    assert spearman({"a": 4, "b": 3, "c": 2, "d": 1}, {"a": 3, "b": 4, "c": 1, "d": 2}) == pytest.approx(0.6, abs=1e-15)
    # a tie: ranks 1.5, 1.5, 3 vs 1, 2, 3 -> 1.5 / sqrt(1.5 * 2) = sqrt(3) / 2
    assert spearman({"a": 1.0, "b": 1.0, "c": 2.0}, {"a": 1.0, "b": 2.0, "c": 3.0}) == pytest.approx(math.sqrt(3) / 2,
                                                                                                    abs=1e-15)
    # only the names both sides have (with a value) count
    assert spearman({**SAME, "z": 100.0, "y": None}, {**GAINS, "x": -3.0, "y": 2.0}) == 1.0
    # a monotone transform of either side changes nothing
    assert spearman({k: v ** 3 for k, v in SAME.items()}, {k: math.exp(v) for k, v in GAINS.items()}) == 1.0


def test_spearman_undefined():
    assert spearman({"a": 1.0}, {"a": 2.0}) is None  # one name
    assert spearman({}, {}) is None
    assert spearman({"a": 1.0, "b": 2.0}, {"b": 1.0, "c": 2.0}) is None  # one name in common
    assert spearman({"a": 0.5, "b": 0.5, "c": 0.5}, GAINS) is None  # constant scores
    assert spearman(SAME, {k: 2.0 for k in SAME}) is None  # constant gains


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    predicted = {"a": 0.3, "b": 0.1, "c": 0.3, "d": -0.2, "e": 0.7, "f": 0.1}
    measured = {"a": 2.0, "b": -1.0, "c": 0.5, "d": 0.5, "e": 3.0, "f": 4.0}
    names = sorted(predicted)
    expected = stats.spearmanr([predicted[n] for n in names], [measured[n] for n in names]).statistic
    assert spearman(predicted, measured) == pytest.approx(expected, abs=1e-12)


def test_ndcg_by_hand():
    assert ndcg_at_k(SAME, GAINS) == 1.0
    # relevance 5, 3, 1, 0; reversed top 3 = d, c, b: (0 + 1/log2 3 + 3/2) / (5 + 3/log2 3 + 1/2)
    assert ndcg_at_k(REVERSED, GAINS) == pytest.approx((1 / L3 + 3 / 2) / (5 + 3 / L3 + 1 / 2), abs=1e-15)
    assert ndcg_at_k(REVERSED, GAINS, k=1) == 0.0  # its pick is the worst candidate
    assert ndcg_at_k({"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.1}, GAINS, k=1) == 3 / 5  # picks b: relevance 3 of 5
    assert ndcg_at_k(REVERSED, GAINS, k=10) == pytest.approx(
        (1 / L3 + 3 / 2 + 5 / math.log2(5)) / (5 + 3 / L3 + 1 / 2), abs=1e-15)  # k past the names: all of them


def test_ndcg_is_invariant_to_a_common_shift_and_averages_over_ties():
    for shift in (-60.0, 80.0):
        assert ndcg_at_k(REVERSED, {k: v + shift for k, v in GAINS.items()}) == ndcg_at_k(REVERSED, GAINS)
    # a and b tie on score: they share positions 1 and 2, each counting their mean relevance (0 + 2) / 2 = 1
    # (McSherry & Najork 2008); relevance a 0, b 2, c 1; the names' order does not matter
    tied = {"a": 1.0, "b": 1.0, "c": 0.0}
    expected = (1 * (1 + 1 / L3) + 1 / 2) / (2 + 1 / L3)
    assert ndcg_at_k(tied, {"a": 0.0, "b": 2.0, "c": 1.0}) == pytest.approx(expected, abs=1e-15)
    assert ndcg_at_k(tied, {"a": 2.0, "b": 0.0, "c": 1.0}) == pytest.approx(expected, abs=1e-15)
    # a tie across the cut-off: b, c, d tie below a; k=2 counts one of their three positions
    across = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}
    assert ndcg_at_k(across, GAINS, k=2) == pytest.approx((5 + (3 + 1 + 0) / 3 / L3) / (5 + 3 / L3), abs=1e-15)


def test_ndcg_undefined():
    assert ndcg_at_k(SAME, {k: 1.5 for k in SAME}) is None  # all relevances 0
    assert ndcg_at_k({"a": 1.0}, {"a": 3.0}) is None
    assert ndcg_at_k({}, GAINS) is None
    with pytest.raises(ValueError, match="k must be at least 1"):
        ndcg_at_k(SAME, GAINS, k=0)


def test_regret_at_1_by_hand():
    assert regret_at_1(SAME, GAINS) == 0.0
    assert regret_at_1(REVERSED, GAINS) == 5.0  # picks d (0.0); best a (5.0)
    assert regret_at_1({"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.1}, GAINS) == 2.0  # picks b
    assert regret_at_1({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 4.0}) == 1.5  # a tie: 4 - the mean of 1 and 4
    assert regret_at_1({"a": 0.5, "b": 0.5, "c": 0.5}, GAINS) == 5.0 - 3.0  # constant scores: best - mean (5, 3, 1)
    assert regret_at_1(SAME, {k: -2.0 for k in SAME}) == 0.0  # equal gains: any pick is the best
    assert regret_at_1({"a": 1.0}, {"a": 3.0}) is None and regret_at_1({}, {}) is None


def test_top():
    assert top({"b": 1.0, "a": 1.0, "c": 0.0}) == "a"
    assert tied_for_top({"b": 1.0, "a": 1.0, "c": 0.0}) == ["a", "b"] and tied_for_top({"a": None}) == []
    assert top({"a": None, "b": -3.0}) == "b"
    assert top({}) is None and top({"a": None}) is None


def test_pure_python():
    code = ("import sys, stepstone.ranking.agreement; "
            "print(sorted(m for m in ('numpy', 'torch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
