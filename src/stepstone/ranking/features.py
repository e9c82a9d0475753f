"""Features of a task's encoded rows under the active adapter setup, as the estimators read them; cached on disk.

Two kinds, both from the last layer of the backbone (`model.base_model`, the active adapter applied):
- **labelled features** (LogME): per format, what that format's head reads (REDUCTIONS): the `<s>` token of a
  sentence (classification); the first sub-word of each word with its tag (tagging: the positions the tagging head
  is trained on); the `<s>` token of every (context, option) pair with a 0/1 label "is the answer" (multiple choice:
  the multiple-choice head scores each option by a linear map of exactly that vector). Extractive QA has none: its
  labels are spans, not one class per fixed vector, so LogME does not apply (rank says so and uses the others).
- **a text embedding** (dataset similarity): the mean over examples of the attention-masked mean of the last
  layer (the pooling multilingual-e5 is trained with), one sequence per example (`first_sequences`).

Cache: `$STEPSTONE_CACHE/features/` (default ~/.cache/stepstone; STEPSTONE_CACHE=off: none), one safetensors file
per (adapter weights, backbone fingerprint, task, examples, lengths, kind, FEATURES_VERSION), written atomically.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..formats import IGNORE, FormatHandler
from ..progress import ProgressFactory, silent
from ..tasks.base import TaskFormat
from ..evaluation import row_length
from ..tokenized import cache_root

# raise when a reduction or the pooling changes: cached features are then recomputed (2: the text embedding reads
# one sequence per example)
FEATURES_VERSION = 2
BATCH = 32


@dataclass(frozen=True)
class Labelled:
    """Feature vectors (n x D, float64) and their class ids (n)."""

    features: np.ndarray
    labels: np.ndarray


# hidden (sequences x L x D), the collated batch, its attention mask (sequences x L) -> (features, labels)
Reduction = Callable[[torch.Tensor, dict, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _first_token(hidden: torch.Tensor, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return hidden[:, 0], batch["labels"].reshape(-1)


def _first_subwords(hidden: torch.Tensor, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    labels = batch["labels"]
    keep = labels != IGNORE
    return hidden[keep], labels[keep]


def _options(hidden: torch.Tensor, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    answers = batch["labels"]  # examples; hidden holds examples x choices sequences
    choices = hidden.shape[0] // answers.shape[0]
    correct = torch.nn.functional.one_hot(answers, choices).reshape(-1)
    return hidden[:, 0], correct


REDUCTIONS: dict[TaskFormat, tuple[Reduction, str]] = {
    TaskFormat.CLASSIFICATION: (_first_token, "<s> token (what the classification head reads)"),
    TaskFormat.TAGGING: (_first_subwords, "first sub-word of each word (what the tagging head reads)"),
    TaskFormat.MULTIPLE_CHOICE: (_options, "<s> token of each (context, option) pair, label 1 for the answer "
                                           "(what the multiple-choice head scores)"),
}
EMBEDDING = ("mean over examples of the attention-masked mean of the last layer (bare backbone), one sequence per "
             "example (multiple choice: its first option; QA: its first window)")


def _hidden(model: Any, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The last layer of every sequence of the batch (choices flattened: examples x choices sequences)."""
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"], batch["attention_mask"]
    ids, mask = ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, mask.shape[-1])
    out = model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device))
    return out.last_hidden_state.float().cpu(), mask


def _passes(model: Any, handler: FormatHandler, rows: list[dict], tokenizer: Any, progress: ProgressFactory,
            description: str):
    """(hidden, batch, mask) per batch of rows, shortest rows first (less padding); inference mode."""
    order = sorted(range(len(rows)), key=lambda i: row_length(rows[i]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), progress(description, len(rows)) as bar:
            for start in range(0, len(order), BATCH):
                chunk = [rows[i] for i in order[start:start + BATCH]]
                batch = handler.collate(chunk, tokenizer)
                hidden, mask = _hidden(model, batch)
                yield hidden, batch, mask
                bar.advance(len(chunk))
    finally:
        model.train(was_training)


def labelled_features(model: Any, handler: FormatHandler, fmt: TaskFormat, rows: list[dict], tokenizer: Any,
                      progress: ProgressFactory = silent, description: str = "features") -> Labelled:
    """The LogME features of `rows` (REDUCTIONS[fmt]) under the model's active setup."""
    reduce = REDUCTIONS[fmt][0]
    features, labels = [], []
    for hidden, batch, mask in _passes(model, handler, rows, tokenizer, progress, description):
        f, y = reduce(hidden, batch, mask)
        features.append(f.double().numpy())
        labels.append(y.long().numpy())
    return Labelled(np.concatenate(features), np.concatenate(labels))


def first_sequences(rows: list[dict]) -> list[dict]:
    """One sequence per example, as the text embedding reads it: a row's first (context, option) pair (multiple
    choice: the context dominates every pair), an example's first window (QA: `example_index` links its
    windows), else the row itself."""
    seen, out = set(), []
    for row in rows:
        ids, mask = row["input_ids"], row["attention_mask"]
        if ids and isinstance(ids[0], list):
            ids, mask = ids[0], mask[0]
        example = row.get("example_index")
        if example is not None:
            if example in seen:
                continue
            seen.add(example)
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


class _Sequences:
    """Collation of plain (input_ids, attention_mask) rows, for the text embedding's passes."""

    @staticmethod
    def collate(rows, tokenizer):
        from ..formats.base import pad_batch

        return pad_batch(rows, ("input_ids", "attention_mask"), {"input_ids": tokenizer.pad_token_id})


def text_embedding(model: Any, rows: list[dict], tokenizer: Any, progress: ProgressFactory = silent,
                   description: str = "embed") -> np.ndarray:
    """EMBEDDING of encoded `rows` (D, float64): one sequence per example (`first_sequences`)."""
    total, count = None, 0
    for hidden, _, mask in _passes(model, _Sequences, first_sequences(rows), tokenizer, progress, description):
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        summed = pooled.double().sum(0)
        total = summed if total is None else total + summed
        count += pooled.shape[0]
    return (total / count).numpy()


# ------------------------------------------------------------------------------------------------ cache
def cache_key(**parts: Any) -> str:
    """sha256 of everything cached features depend on (and FEATURES_VERSION)."""
    text = json.dumps({"version": FEATURES_VERSION, **parts}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _folder() -> Path | None:
    root = cache_root()
    return None if root is None else root.parent / "features"


def cached(label: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
    """`compute()` (arrays by name), from the cache when computed before: (arrays, whether cached). Stored
    atomically: a killed process leaves no half file; an unreadable file is computed again."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file, save

    folder = _folder()
    path = None if folder is None else folder / f"{label}-{key[:32]}.safetensors"
    if path is not None and path.is_file():
        try:
            return load_file(str(path)), True
        except (OSError, SafetensorError, ValueError):
            pass
    arrays = compute()
    if path is not None:
        from ..artifacts import write_bytes_atomic
        from ..errors import StepstoneError

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
        except (OSError, StepstoneError):  # a read-only or full cache: the features are still returned
            pass
    return arrays, False
