"""The per-format contract: head, tokenisation, collation, and turning model outputs into a score.

Generic code (training, evaluation) only talks to a `FormatHandler`, looked up by `TaskFormat`.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import torch

from ..metrics import compute
from ..registry import Registry
from ..tasks.base import TaskFormat, TaskSpec

IGNORE = -100  # label id ignored by the loss (special tokens, non-first subwords)


class FormatHandler(Protocol):
    """What one task format needs. `encode` output rows are dicts of python lists; keys listed in
    `model_keys` go to the model (after `collate`), the rest (e.g. QA offsets) serve `score`."""

    model_keys: tuple[str, ...]

    def add_head(self, model: Any, name: str, task: TaskSpec) -> None: ...

    def encode(self, examples: list[dict], tokenizer: Any, task: TaskSpec, max_length: int,
               doc_stride: int, train: bool) -> list[dict]: ...

    def collate(self, rows: Sequence[dict], tokenizer: Any) -> dict[str, torch.Tensor]: ...

    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        """What the loss of a collated batch averages over (labelled tokens, examples, QA features):
        the weight of a process's share when a batch is split across processes."""
        ...

    def gather(self, output: Any) -> list[np.ndarray]:
        """Per-row arrays kept from one batch's model output (e.g. logits)."""
        ...

    def decode(self, examples: list[dict], rows: list[dict], outputs: list[np.ndarray],
               task: TaskSpec) -> tuple[Any, Any]:
        """(predictions, references) in the form `metrics.compute` and `metrics.statistics` take for the task's
        metric (evaluation.score scores both from one decoding)."""
        ...

    def score(self, examples: list[dict], rows: list[dict], outputs: list[np.ndarray], task: TaskSpec,
              lang: str) -> dict[str, float]: ...


class Decoded:
    """`score` of a handler that turns outputs into predictions (`decode`): the metric of (predictions,
    references)."""

    def decode(self, examples: list[dict], rows: list[dict], outputs: list[np.ndarray],
               task: TaskSpec) -> tuple[Any, Any]:
        raise NotImplementedError

    def score(self, examples, rows, outputs, task, lang):
        return compute(task.metric, *self.decode(examples, rows, outputs, task), lang=lang)


FORMATS: Registry[FormatHandler] = Registry("task format")


def pad_batch(rows: Sequence[dict], keys: Sequence[str], pad_values: dict[str, int]) -> dict[str, torch.Tensor]:
    """Dynamic padding: every 1-d list under `keys` is right-padded to the longest in the batch."""
    batch = {}
    for key in keys:
        values = [row[key] for row in rows]
        if isinstance(values[0], list):
            longest = max(len(v) for v in values)
            pad = pad_values.get(key, 0)
            values = [v + [pad] * (longest - len(v)) for v in values]
        batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


def examples_in(batch: dict[str, torch.Tensor]) -> int:
    """The rows of a collated batch (examples; QA features): the loss unit of per-example losses."""
    return int(batch["input_ids"].shape[0])


def handler_for(task: TaskSpec) -> FormatHandler:
    return FORMATS.get(task.format.value)


def register(fmt: TaskFormat, handler: FormatHandler) -> FormatHandler:
    return FORMATS.register(fmt.value, handler)
