"""Sequence and sequence-pair classification (XNLI, PAWS-X, SST-2, ...): a head on the <s> token."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..tasks.base import TaskFormat, TaskSpec
from .base import IGNORE, Decoded, examples_in, pad_batch, register


class Classification(Decoded):
    model_keys = ("input_ids", "attention_mask", "labels")

    def add_head(self, model: Any, name: str, task: TaskSpec) -> None:
        model.add_classification_head(name, num_labels=len(task.labels), id2label=dict(enumerate(task.labels)))

    def encode(self, examples, tokenizer, task, max_length, doc_stride, train):
        index = {label: i for i, label in enumerate(task.labels)}
        pairs = [e.get("text_pair") for e in examples]
        enc = tokenizer([e["text"] for e in examples], pairs if any(p is not None for p in pairs) else None,
                        truncation=True, max_length=max_length)
        return [{"input_ids": ids, "attention_mask": mask, "labels": index[e["label"]]}
                for ids, mask, e in zip(enc["input_ids"], enc["attention_mask"], examples)]

    def collate(self, rows: Sequence[dict], tokenizer: Any):
        return pad_batch(rows, self.model_keys, {"input_ids": tokenizer.pad_token_id, "labels": IGNORE})

    def loss_units(self, batch):
        return examples_in(batch)

    def gather(self, output):
        return list(output.logits.float().cpu().numpy())

    def decode(self, examples, rows, outputs, task):
        return [int(np.argmax(logits)) for logits in outputs], [row["labels"] for row in rows]


register(TaskFormat.CLASSIFICATION, Classification())
