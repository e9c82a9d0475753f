"""Batched prediction and scoring of one task split in one language with whatever setup is active."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, NamedTuple

import numpy as np
import torch

from .backbone import training_layout_kept
from .formats import FormatHandler
from .precision import autocast, frozen_linears_lowered
from .progress import ProgressFactory, silent
from .specs import Precision
from .tasks.base import TaskSpec


def predict(model: Any, handler: FormatHandler, rows: list[dict], tokenizer: Any, batch_size: int,
            progress: ProgressFactory = silent, description: str = "predict", head: str | None = None,
            precision: Precision = Precision.FP32) -> list[np.ndarray]:
    """Model outputs per row, in row order. Rows are batched by length (less padding), then restored.
    A model in training mode (a dev evaluation between epochs) comes back as it was: mode and weights."""
    order = sorted(range(len(rows)), key=lambda i: row_length(rows[i]))
    outputs: list[np.ndarray | None] = [None] * len(rows)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # a model that trains on gets its 4-bit layers' training layout back; one that only evaluates keeps
    # the faster inference layout bitsandbytes switches to (repacking per language would cost seconds)
    with (training_layout_kept(model) if was_training else nullcontext()), frozen_linears_lowered(model, precision), \
            torch.inference_mode(), progress(description, len(rows)) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = handler.collate([rows[i] for i in chunk], tokenizer)
            # labels are not needed for prediction; dropping them skips the loss computation
            inputs = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            if head is not None:
                inputs["head"] = head
            with autocast(precision, device):
                output = model(**inputs)
            for i, out in zip(chunk, handler.gather(output)):
                outputs[i] = out
            bar.advance(len(chunk))
    model.train(was_training)
    return outputs  # type: ignore[return-value]


class Scored(NamedTuple):
    """One language's metrics and the main metric's per-example statistics ([examples, k]: `metrics.statistics`)."""

    metrics: dict[str, float]
    statistics: np.ndarray | None


def score(model: Any, handler: FormatHandler, task: TaskSpec, examples: list[dict], rows: list[dict],
          tokenizer: Any, batch_size: int, lang: str, progress: ProgressFactory = silent,
          head: str | None = None, precision: Precision = Precision.FP32, what: str | None = None) -> Scored:
    """The metrics of `examples` and their per-example statistics (`lang`: the metric's language rules; `what`:
    their name in progress lines, default `lang`)."""
    from .metrics import compute, statistics

    outputs = predict(model, handler, rows, tokenizer, batch_size, progress, f"evaluate {task.name} [{what or lang}]",
                      head, precision)
    predictions, references = handler.decode(examples, rows, outputs, task)
    return Scored(compute(task.metric, predictions, references, lang=lang),
                  statistics(task.metric, predictions, references, lang=lang))


def row_length(row: dict) -> int:
    """Tokens of a feature row (all choices of a multiple-choice row)."""
    ids = row["input_ids"]
    return sum(len(x) for x in ids) if ids and isinstance(ids[0], list) else len(ids)
