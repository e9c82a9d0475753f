"""Training batches: random, or grouped by length (less padding), each pass covering every row once."""
from __future__ import annotations

from itertools import islice
from types import SimpleNamespace

import torch

from stepstone.training import GROUP_BATCHES, _batches

ROWS = [{"input_ids": list(range(n)), "id": i} for i, n in enumerate(torch.randint(1, 60, (400,), generator=torch.Generator().manual_seed(0)).tolist())]


def one_pass(by_length: bool, seed: int = 0) -> list[list[dict]]:
    stream = _batches(SimpleNamespace(rows=ROWS), 8, torch.Generator().manual_seed(seed), by_length)
    return list(islice(stream, 50))  # 400 rows / 8 = 50 batches = one pass


def padding(batches: list[list[dict]]) -> int:
    return sum(max(len(r["input_ids"]) for r in b) * len(b) - sum(len(r["input_ids"]) for r in b) for b in batches)


def test_every_row_once_per_pass():
    for by_length in (False, True):
        ids = sorted(r["id"] for b in one_pass(by_length) for r in b)
        assert ids == list(range(len(ROWS)))


def test_grouping_by_length_cuts_padding_and_stays_shuffled():
    grouped, plain = one_pass(True), one_pass(False)
    assert padding(grouped) < padding(plain) / 3
    assert one_pass(True, seed=0) != one_pass(True, seed=1)  # still a random order
    lengths = [len(b[0]["input_ids"]) for b in grouped]
    assert lengths != sorted(lengths, reverse=True)  # batches are shuffled, not globally sorted
    assert GROUP_BATCHES == 50
