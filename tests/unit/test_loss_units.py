"""Each format handler says what its loss averages over (the weight of a process's share of a batch)."""
from __future__ import annotations

import torch

from stepstone.formats import FORMATS, IGNORE
from stepstone.tasks.base import TaskFormat

BATCHES = {
    # tagging: labelled tokens (first subwords), whatever the padding
    TaskFormat.TAGGING: ({"input_ids": torch.ones(2, 5, dtype=torch.long),
                          "labels": torch.tensor([[IGNORE, 3, IGNORE, 1, 0], [IGNORE, 2, IGNORE, IGNORE, IGNORE]])}, 4),
    # classification: examples
    TaskFormat.CLASSIFICATION: ({"input_ids": torch.ones(3, 7, dtype=torch.long), "labels": torch.tensor([0, 1, 1])}, 3),
    # multiple choice: examples (batch x choices x tokens), not choices
    TaskFormat.MULTIPLE_CHOICE: ({"input_ids": torch.ones(2, 4, 6, dtype=torch.long), "labels": torch.tensor([3, 0])}, 2),
    # QA: features (no labels key; start / end positions)
    TaskFormat.QA: ({"input_ids": torch.ones(5, 9, dtype=torch.long), "start_positions": torch.zeros(5, dtype=torch.long),
                     "end_positions": torch.zeros(5, dtype=torch.long)}, 5),
}


def test_every_format_has_a_loss_unit():
    assert set(FORMATS) == {f.value for f in BATCHES}
    units = {fmt: FORMATS.get(fmt.value).loss_units(batch) for fmt, (batch, _) in BATCHES.items()}
    assert units == {fmt: expected for fmt, (_, expected) in BATCHES.items()}
    assert all(type(u) is int for u in units.values())
