"""Examples for a task split: loaded from the task's source, limited, and checked against the task."""
from __future__ import annotations

from pathlib import Path

from ..errors import StepstoneError, choices
from ..tasks.base import OTHER_LABEL, Split, TaskFormat, TaskSpec


def load_examples(task: TaskSpec, split: Split, lang: str, data_dir: Path | None = None,
                  limit: int | None = None) -> list[dict]:
    """The first `limit` examples of one split and language; empty data and unknown labels are errors."""
    if not task.trainable and split is Split.TRAIN:
        raise StepstoneError(f"task '{task.name}' is evaluation-only (retrieval): it has no train split")
    source = task
    borrowed = {Split.TRAIN: task.train_from, Split.VALIDATION: task.dev_from}.get(split)
    if borrowed is not None and lang == task.train_language:
        from ..tasks import get_task

        source = get_task(borrowed)  # e.g. XNLI's English training data is MNLI
    source.check_language(lang)
    examples = source.source.load(split, lang, data_dir)
    if limit is not None:
        examples = examples[:limit]
    where = f"task '{source.name}', {split.value} split, language '{lang}'"
    if not examples:
        raise StepstoneError(f"no examples for {where} ({task.source.describe()})")
    if task.open_labels:
        return _map_open_labels(task, examples)
    _check_labels(task, examples, where)
    return examples


def _map_open_labels(task: TaskSpec, examples: list[dict]) -> list[dict]:
    """Open label sets: tags outside the (derived) set become OTHER_LABEL; before the set is derived
    (no labels yet) examples pass unchanged."""
    if not task.labels:
        return examples
    known = set(task.labels)
    return [{**e, "tags": [t if t in known else OTHER_LABEL for t in e["tags"]]} for e in examples]


def _check_labels(task: TaskSpec, examples: list[dict], where: str) -> None:
    valid = set(task.labels)
    for i, example in enumerate(examples):
        if task.format is TaskFormat.CLASSIFICATION:
            found = [example["label"]]
        elif task.format is TaskFormat.TAGGING:
            found = example["tags"]
        else:
            continue
        unknown = [label for label in found if label not in valid]
        if unknown:
            raise StepstoneError(
                f"{where}, example {i}: label '{unknown[0]}' is not a label of the task (valid: {choices(valid)})"
            )
