"""Dataset similarity (label-free): the cosine between the mean text embeddings of a candidate's training data and
the target's, both embedded by the bare backbone (features.EMBEDDING).

The idea of Vu et al. (EMNLP 2020, "Exploring and Predicting Transferability across NLP Tasks": TextEmb, the mean
of a task's example embeddings) and Poth et al. (EMNLP 2021, "What to Pre-Train on? Efficient Intermediate Task
Selection": SEmb, with a sentence encoder); multilingual-e5 is itself a sentence encoder, so its mean-pooled last
layer is what SEmb would use. A candidate's training texts are not stored with it: they are read again from what
its manifest records (its tasks, the split and the number of examples it trained on), under the data folder
given to rank, else the one it was trained with.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import StepstoneError
from ..manifest import Manifest
from ..tasks import Split, TaskSpec
from ..tasks.examples import load_examples


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0.0 when either is zero)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else 0.0


def training_examples(manifest: Manifest, data_dir: Path | None, limit: int) -> list[tuple[TaskSpec, list[dict]]]:
    """The first `limit` English training examples of each task `manifest` trained on (at most as many as it
    trained on), read again from `data_dir`, else from the manifest's own data folder. Raises StepstoneError with
    the reason when they cannot be read (an imported adapter records no tasks; the files are elsewhere)."""
    if not manifest.tasks:
        raise StepstoneError("it records no training task (an imported adapter)")
    sources = (manifest.data.sources if manifest.data is not None else None) or {}
    spec = manifest.spec or {}
    folders = [d for d in (data_dir, spec.get("data_dir")) if d is not None]
    out = []
    for record in manifest.tasks:
        task = record.registered()
        train = (sources.get(task.name) or {}).get("train") or {}
        split = Split(train.get("split") or (spec.get("train_splits") or {}).get(task.name)
                      or spec.get("train_split") or Split.TRAIN.value)
        count = min(limit, int(train.get("examples") or limit))
        out.append((task, _first_readable(task, split, folders, count)))
    return out


def _first_readable(task: TaskSpec, split: Split, folders: list, count: int) -> list[dict]:
    problem = None
    for folder in folders or [None]:
        try:
            return load_examples(task, split, task.train_language, None if folder is None else Path(folder), count)
        except StepstoneError as err:
            problem = err
    raise StepstoneError(f"its training data ({task.name}, {split.value}) is not readable: {problem}")
