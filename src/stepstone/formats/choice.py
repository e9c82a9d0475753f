"""Multiple choice (HellaSwag, COPA, XCOPA, ...): each (context, option) pair is encoded, one score per option."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..tasks.base import TaskFormat, TaskSpec
from .base import Decoded, examples_in, register


class MultipleChoice(Decoded):
    model_keys = ("input_ids", "attention_mask", "labels")

    def add_head(self, model: Any, name: str, task: TaskSpec) -> None:
        model.add_multiple_choice_head(name, num_choices=task.num_choices)

    def encode(self, examples, tokenizer, task, max_length, doc_stride, train):
        contexts = [e["context"] for e in examples for _ in e["choices"]]
        options = [c for e in examples for c in e["choices"]]
        enc = tokenizer(contexts, options, truncation=True, max_length=max_length)
        rows, start = [], 0
        for example in examples:
            n = len(example["choices"])
            rows.append({"input_ids": enc["input_ids"][start:start + n],
                         "attention_mask": enc["attention_mask"][start:start + n], "labels": example["label"]})
            start += n
        return rows

    def collate(self, rows: Sequence[dict], tokenizer: Any):
        longest = max(len(ids) for row in rows for ids in row["input_ids"])

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([[seq + [value] * (longest - len(seq)) for seq in row[key]] for row in rows])

        return {"input_ids": pad("input_ids", tokenizer.pad_token_id), "attention_mask": pad("attention_mask", 0),
                "labels": torch.tensor([row["labels"] for row in rows])}

    def loss_units(self, batch):
        return examples_in(batch)

    def gather(self, output):
        return list(output.logits.float().cpu().numpy())

    def decode(self, examples, rows, outputs, task):
        return [int(np.argmax(o)) for o in outputs], [row["labels"] for row in rows]


register(TaskFormat.MULTIPLE_CHOICE, MultipleChoice())
