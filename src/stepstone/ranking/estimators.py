"""Each estimator's score of one candidate (a zoo entry, or None: the bare backbone) for the target in a `Context`.

A scorer returns (value, whether it came from the feature cache) or raises StepstoneError with the reason this
candidate has no score (the ranking's row says it).
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import StepstoneError
from ..progress import ProgressFactory
from ..specs import TrainSpec
from ..tasks import Split, TaskSpec
from ..zoo import Entry, Zoo
from .records import NONE


@dataclass(frozen=True)
class Context:
    """The target: its examples and encoded rows, the loaded backbone (the candidates load into it one at a
    time), where its data is, the token lengths, progress."""

    task: TaskSpec
    examples: list[dict]
    rows: list[dict]
    backbone: Any  # backbone.Backbone
    split: Split
    data_dir: Path | None
    train: TrainSpec
    progress: ProgressFactory
    memo: dict = field(default_factory=dict, compare=False)

    @property
    def digest(self) -> str:
        if "digest" not in self.memo:
            self.memo["digest"] = rows_digest(self.rows)
        return self.memo["digest"]


Scorer = Callable[[Context, "Entry | None"], tuple["float | None", bool]]


def rows_digest(rows: list[dict]) -> str:
    """sha256 of what the model reads of encoded rows (ids, mask, labels)."""
    text = json.dumps([[row.get(k) for k in ("input_ids", "attention_mask", "labels")] for row in rows])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@contextmanager
def active(model: Any, entry: Entry | None) -> Iterator[None]:
    """`entry`'s adapter loaded and active in `model` (None: no adapter active), removed afterwards."""
    from .. import methods
    from ..backbone import place
    from ..integrity import check_artifact

    if entry is None:
        methods.activate(model, None, None)
        yield
        return
    check_artifact(entry.path, entry.manifest)
    methods.load_adapter(model, entry.path, entry.name, with_head=False)
    try:
        place(model)
        methods.activate(model, entry.name, None)
        yield
    finally:
        methods.remove_adapter(model, entry.name)


def logme_score(ctx: Context, entry: Entry | None) -> tuple[float, bool]:
    """LogME of the target's labelled features (features.REDUCTIONS) with `entry`'s adapter active."""
    from ..formats import handler_for
    from .features import cache_key, cached, labelled_features
    from .logme import logme

    name = NONE if entry is None else entry.name
    key = cache_key(kind="logme", adapter=None if entry is None else entry.manifest.files,
                    backbone=ctx.backbone.fingerprint, task=ctx.task.name, format=ctx.task.format.value,
                    labels=list(ctx.task.labels), rows=ctx.digest)

    def compute() -> dict[str, np.ndarray]:
        with active(ctx.backbone.model, entry):
            found = labelled_features(ctx.backbone.model, handler_for(ctx.task), ctx.task.format, ctx.rows,
                                      ctx.backbone.tokenizer, ctx.progress, f"logme {name}")
        return {"features": found.features, "labels": found.labels}

    arrays, hit = cached(f"logme-{ctx.task.name}-{name}", key, compute)
    return logme(arrays["features"], arrays["labels"]), hit


def _embedding(ctx: Context, task: TaskSpec, rows: list[dict]) -> tuple[np.ndarray, bool]:
    """The bare backbone's text embedding of `task`'s encoded rows (features.EMBEDDING), cached."""
    from .features import cache_key, cached, text_embedding

    key = cache_key(kind="semb", backbone=ctx.backbone.fingerprint, task=task.name, rows=rows_digest(rows))

    def compute() -> dict[str, np.ndarray]:
        with active(ctx.backbone.model, None):
            mean = text_embedding(ctx.backbone.model, rows, ctx.backbone.tokenizer, ctx.progress, f"embed {task.name}")
        return {"mean": mean}

    arrays, hit = cached(f"semb-{task.name}", key, compute)
    return arrays["mean"], hit


def semb_score(ctx: Context, entry: Entry | None) -> tuple[float, bool]:
    """Cosine of the mean text embeddings of `entry`'s training data (its tasks, as many examples as the
    target's, at most what it trained on) and the target's."""
    from .. import tokenized
    from ..formats import handler_for
    from .similarity import cosine, training_examples

    if entry is None:
        raise StepstoneError("the bare backbone has no intermediate training data to compare")
    target, hit = _embedding(ctx, ctx.task, ctx.rows)
    total, weight, hits = 0.0, 0, [hit]
    for task, examples in training_examples(entry.manifest, ctx.data_dir, len(ctx.examples)):
        rows = tokenized.encode(handler_for(task), examples, ctx.backbone.tokenizer, task, ctx.train.max_length,
                                ctx.train.doc_stride, True)
        mean, hit = _embedding(ctx, task, rows)
        total, weight = total + mean * len(examples), weight + len(examples)  # each task by its examples
        hits.append(hit)
    return cosine(total / weight, target), all(hits)


def proxy_of(method: str, steps: int, train: TrainSpec, zoo: Zoo) -> Scorer:
    """The proxy scorer: `steps` steps of a `method` target adapter on Stack(entry) (proxy.py)."""
    from .proxy import proxy_score, proxy_train

    def score(ctx: Context, entry: Entry | None) -> tuple[float | None, bool]:
        spec = proxy_train(train, steps, len(ctx.examples))
        value = proxy_score(ctx.task.name, entry, method, ctx.backbone.spec, spec, ctx.data_dir, ctx.split.value,
                            zoo, ctx.progress)
        if value is None:
            raise StepstoneError(f"no English dev score for '{ctx.task.name}' (no dev data here)")
        return value, False

    return score
