"""Does a ranking predict? Agreement of an estimator's scores with the gains a grid measured.

Each function takes two dicts candidate name -> value (`predicted`: an estimator's scores, higher = predicted
to help more; `measured`: the measured zero-shot gains, in points) and compares them on the names both have
(a None value counts as missing). Each returns None where the measure is undefined, in particular with fewer
than two names: with one candidate there is nothing to order or choose between.
Orders are best first, ties broken by name (as `Ranking.order` breaks them). Pure Python: the report imports
this without numpy or torch.
"""
from __future__ import annotations

import math


def _common(predicted: dict[str, float | None], measured: dict[str, float | None]) -> list[str]:
    """The names with a value on both sides, sorted."""
    return sorted(n for n in predicted.keys() & measured.keys()
                  if predicted[n] is not None and measured[n] is not None)


def _best_first(values: dict[str, float], names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (-values[n], n))


def average_ranks(values: list[float]) -> list[float]:
    """1-based ranks of `values` in ascending order; tied values share the mean of the ranks they span
    ([10, 20, 20, 30] -> [1.0, 2.5, 2.5, 4.0])."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(predicted: dict[str, float], measured: dict[str, float]) -> float | None:
    """Spearman's rank correlation: the Pearson correlation of the two sides' average ranks (ties share their
    mean rank, as scipy.stats.spearmanr). 1 = the same order, -1 = reversed. None: fewer than two names, or
    either side constant (a correlation with a constant is undefined)."""
    names = _common(predicted, measured)
    if len(names) < 2:
        return None
    x = average_ranks([predicted[n] for n in names])
    y = average_ranks([measured[n] for n in names])
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    r = sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r))  # rounding must not leave [-1, 1]


def _groups(predicted: dict[str, float], names: list[str]) -> list[list[str]]:
    """`names` best first, in groups of equal predicted score (an estimator that ties them does not order them)."""
    groups: list[list[str]] = []
    for name in _best_first(predicted, names):
        if groups and predicted[groups[-1][0]] == predicted[name]:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def _discount(position: int) -> float:
    return 1 / math.log2(position + 1)


def ndcg_at_k(predicted: dict[str, float], measured: dict[str, float], k: int = 3) -> float | None:
    """NDCG@k of the predicted order (best first): DCG = sum over positions i = 1..k of rel_i / log2(i + 1),
    divided by the DCG of the measured order (the ideal). 1 = the top k in the best order. Candidates the
    estimator ties share their positions: each of the group's positions within the top k counts the group's mean
    relevance (McSherry & Najork, ECIR 2008: the expected DCG over the orders of the tie), so a tie is not
    broken by the names' alphabet.

    Relevance: a candidate's measured gain minus the smallest measured gain among the names, so the worst
    candidate has relevance 0 and NDCG does not change when every gain moves by the same amount. Poth et al.
    (EMNLP 2021, "What to pre-train on?") compute NDCG on the target performance itself; on absolute scores the
    candidates differ by a few points out of ~80 and every order scores close to 1, which says nothing about the
    estimator, hence the shift. None: fewer than two names, or every relevance 0 (all gains equal)."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    names = _common(predicted, measured)
    if len(names) < 2:
        return None
    floor = min(measured[n] for n in names)
    relevance = {n: measured[n] - floor for n in names}
    ideal = sum(g * _discount(i) for i, g in enumerate(sorted(relevance.values(), reverse=True)[:k], 1))
    if ideal == 0:
        return None
    dcg, start = 0.0, 1
    for group in _groups(predicted, names):
        mean = sum(relevance[n] for n in group) / len(group)
        dcg += mean * sum(_discount(i) for i in range(start, min(start + len(group), k + 1)))
        start += len(group)
    return dcg / ideal


def regret_at_1(predicted: dict[str, float], measured: dict[str, float]) -> float | None:
    """The best measured gain minus the measured gain of the estimator's top pick: what choosing by the estimator
    cost, in the gains' unit; >= 0, 0 = its pick was the best. Candidates tied for the top score count by their
    mean gain (the expected regret of picking one of them at random). None: fewer than two names."""
    names = _common(predicted, measured)
    if len(names) < 2:
        return None
    tied = _groups(predicted, names)[0]
    return max(measured[n] for n in names) - sum(measured[n] for n in tied) / len(tied)


def tied_for_top(values: dict[str, float | None]) -> list[str]:
    """The names sharing the best value (None values skipped), by name; empty when there is none."""
    names = sorted(n for n, v in values.items() if v is not None)
    return _groups(values, names)[0] if names else []


def top(values: dict[str, float | None]) -> str | None:
    """The best-valued name (ties by name; None values skipped), None when there is none."""
    names = sorted(n for n, v in values.items() if v is not None)
    return _best_first(values, names)[0] if names else None
