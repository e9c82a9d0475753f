"""Token classification (UD-POS, PAN-X NER, toy tags): a label per word, predicted at its first subword."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..tasks.base import TaskFormat, TaskSpec
from .base import IGNORE, Decoded, pad_batch, register


class Tagging(Decoded):
    model_keys = ("input_ids", "attention_mask", "labels")

    def add_head(self, model: Any, name: str, task: TaskSpec) -> None:
        model.add_tagging_head(name, num_labels=len(task.labels), id2label=dict(enumerate(task.labels)))

    def encode(self, examples, tokenizer, task, max_length, doc_stride, train):
        index = {label: i for i, label in enumerate(task.labels)}
        enc = tokenizer([e["tokens"] for e in examples], is_split_into_words=True, truncation=True,
                        max_length=max_length)
        rows = []
        for i, example in enumerate(examples):
            words, labels, previous = [], [], None
            for word in enc.word_ids(i):
                first = word is not None and word != previous
                words.append(word if first else -1)
                labels.append(index[example["tags"][word]] if first else IGNORE)
                previous = word
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "labels": labels, "word_index": words})
        return rows

    def collate(self, rows: Sequence[dict], tokenizer: Any):
        return pad_batch(rows, self.model_keys, {"input_ids": tokenizer.pad_token_id, "labels": IGNORE})

    def loss_units(self, batch):
        return int((batch["labels"] != IGNORE).sum())  # labelled tokens (first subwords)

    def gather(self, output):
        return list(output.logits.float().cpu().numpy())

    def decode(self, examples, rows, outputs, task):
        predictions = []
        for example, row, logits in zip(examples, rows, outputs):
            # Words cut off by max_length get the first label ('O' for NER): they count as predicted.
            tags = [task.labels[0]] * len(example["tags"])
            for position, word in enumerate(row["word_index"]):
                if word >= 0:
                    tags[word] = task.labels[int(np.argmax(logits[position]))]
            predictions.append(tags)
        return predictions, [e["tags"] for e in examples]


register(TaskFormat.TAGGING, Tagging())
