"""The batch order of training: which task each step of an epoch draws from (`schedule`), and each task's
endless stream of batches (`_batches`). Both draw from the run's seeded generator, in this order, so a
resumed run can replay them (resume.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from ..evaluation import row_length
from ..specs import Sampling, TrainSpec

if TYPE_CHECKING:
    from .loop import TaskData

GROUP_BATCHES = 50  # transformers' LengthGroupedSampler: megabatches of 50 batches


def schedule(batches: list[int], examples: list[int], spec: TrainSpec, generator: torch.Generator) -> list[int]:
    """The task index of every step of one epoch (see Sampling). One task: its batches in order."""
    total = sum(batches)
    if len(batches) == 1:
        return [0] * total
    if spec.sampling is Sampling.PROPORTIONAL:
        steps = torch.tensor([i for i, n in enumerate(batches) for _ in range(n)])
        return steps[torch.randperm(total, generator=generator)].tolist()
    weights = torch.tensor(examples, dtype=torch.float64) ** (1.0 / spec.temperature)
    return torch.multinomial(weights / weights.sum(), total, replacement=True, generator=generator).tolist()


def _batches(part: TaskData, size: int, generator: torch.Generator, by_length: bool = False) -> Iterator[list[dict]]:
    """Endless batches of one task: a fresh random order on every pass over its rows; with `by_length`,
    rows of similar length share a batch (groups of GROUP_BATCHES batches sorted by length, batches shuffled)."""
    while True:
        order = torch.randperm(len(part.rows), generator=generator).tolist()
        if not by_length:
            for start in range(0, len(order), size):
                yield [part.rows[i] for i in order[start:start + size]]
            continue
        group = size * GROUP_BATCHES
        batches = []
        for start in range(0, len(order), group):
            chunk = sorted(order[start:start + group], key=lambda i: -row_length(part.rows[i]))
            batches += [chunk[b:b + size] for b in range(0, len(chunk), size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield [part.rows[i] for i in batches[b]]
