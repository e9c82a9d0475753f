"""Examples for a task split: loaded from the task's source, limited, and checked against the task
(`load_examples`); `missing_data` says why a language has no local file."""
from __future__ import annotations

from pathlib import Path

from ..data.readers import Examples
from ..errors import StepstoneError, choices
from .base import OTHER_LABEL, Split, TaskFormat, TaskSpec


def load_examples(task: TaskSpec, split: Split, lang: str, data_dir: Path | None = None,
                  limit: int | None = None) -> list[dict]:
    """The first `limit` examples of one split and language; empty data and unknown labels are errors."""
    if not task.trainable and split is Split.TRAIN:
        raise StepstoneError(f"task '{task.name}' is evaluation-only (retrieval): it has no train split")
    source = _source_of(task, split, lang)
    source.check_language(lang, split, data_dir)
    examples = loaded = source.source.load(split, lang, data_dir)
    if limit is not None:
        examples = [limit_bucc(e, limit) for e in examples] if _is_bucc(task) else examples[:limit]
    where = f"task '{source.name}', {split.value} split, language '{lang}'"
    if not examples:
        raise StepstoneError(f"no examples for {where} ({task.source.describe()})")
    if task.open_labels:
        return _map_open_labels(task, examples)
    _check_labels(task, examples, where, loaded if isinstance(loaded, Examples) else None)
    return examples


def _source_of(task: TaskSpec, split: Split, lang: str) -> TaskSpec:
    """The task whose files hold this split: another task's for an English split the task has not got."""
    borrowed = {Split.TRAIN: task.train_from, Split.VALIDATION: task.dev_from}.get(split)
    if borrowed is not None and lang == task.train_language:
        from . import get_task

        return get_task(borrowed)  # e.g. XNLI's English training data is MNLI
    return task


def missing_data(task: TaskSpec, split: Split, lang: str, data_dir: Path | None) -> str | None:
    """Why there is no local file for this split and language (a language evaluation skips), or None: the
    file exists, or the data come from the hub. A language the task does not know, without a file, is an error."""
    source = _source_of(task, split, lang)
    source.check_language(lang, split, data_dir)
    missing = getattr(source.source, "missing", None)
    return missing(split, lang, Path(data_dir)) if data_dir is not None and missing is not None else None


BUCC_DISTRACTORS = 9  # non-gold sentences kept per gold pair on each side when a BUCC problem is limited


def _is_bucc(task: TaskSpec) -> bool:
    from ..metrics import Metric

    return task.metric is Metric.BUCC_F1


def limit_bucc(problem: dict, limit: int) -> dict:
    """A smaller BUCC problem: the first `limit` gold pairs and, on each side, the first
    BUCC_DISTRACTORS x `limit` other sentences (in file order). Gold is then 10% of each side, against ~2-3%
    in full BUCC, so mining is easier and F1 is not comparable with full-size BUCC."""
    gold = list(problem["gold"])[:limit]
    keep_source, keep_target = {s for s, _ in gold}, {t for _, t in gold}

    def side(sentences: dict[str, str], kept: set[str]) -> dict[str, str]:
        others = [key for key in sentences if key not in kept][:BUCC_DISTRACTORS * limit]
        chosen = kept | set(others)
        return {key: text for key, text in sentences.items() if key in chosen}
    return {**problem, "source": side(problem["source"], keep_source), "target": side(problem["target"], keep_target),
            "gold": gold}


def _map_open_labels(task: TaskSpec, examples: list[dict]) -> list[dict]:
    """Open label sets: tags outside the (derived) set become OTHER_LABEL; before the set is derived
    (no labels yet) examples pass unchanged."""
    if not task.labels:
        return examples
    known = set(task.labels)
    return [{**e, "tags": [t if t in known else OTHER_LABEL for t in e["tags"]]} for e in examples]


def _check_labels(task: TaskSpec, examples: list[dict], where: str, located: Examples | None) -> None:
    """Every label in the task's set. `located` (the examples as read, before any limit) names the file
    and line of a bad one; examples from elsewhere (the hub) are named by split and index."""
    valid = set(task.labels)
    for i, example in enumerate(examples):
        if task.format is TaskFormat.MULTIPLE_CHOICE and len(example["choices"]) != task.num_choices:
            # the readers check their own rows; this holds for rows from anywhere (the hub, a union)
            found = f"expected {task.num_choices} choices, found {len(example['choices'])}"
            raise StepstoneError(f"{located.where(i)}: {found}" if located is not None else f"{where}, example {i}: {found}")
        if task.format is TaskFormat.CLASSIFICATION:
            found = [example["label"]]
        elif task.format is TaskFormat.TAGGING:
            found = example["tags"]
        else:
            continue
        unknown = [j for j, label in enumerate(found) if label not in valid]
        if unknown:
            label = found[unknown[0]]
            if located is not None:
                raise StepstoneError(f"{located.where(i, unknown[0])}: label '{label}' is not a label of task "
                                     f"'{task.name}' (valid: {choices(valid)})")
            raise StepstoneError(
                f"{where}, example {i}: label '{label}' is not a label of the task (valid: {choices(valid)})"
            )


def load_file(task: TaskSpec, split: Split, path: Path, limit: int | None = None) -> list[dict]:
    """The first `limit` examples of one local file read as `task`'s `split` in its native format (the reader
    its local layout uses for that split: the candidate whose file ends like `path`, else the first), with the
    labels checked like `load_examples` does (domain shift: `stepstone evaluate --data-file`)."""
    from ..data.readers import Unlabelled
    from .sources import Together

    local = getattr(task.source, "local", None)
    if not task.trainable or local is None:
        what = "a retrieval task" if not task.trainable else f"read from {task.source.describe()}"
        raise StepstoneError(f"--data-file needs a task with a local file format: '{task.name}' is {what}")
    readers = [c for c in local.files.get(split, ()) if not isinstance(c, Together)]
    if not readers:
        raise StepstoneError(f"task '{task.name}' has no local {split.value} file format to read {path} with")
    pattern, read = next((c for c in readers if Path(c[0]).suffix == Path(path).suffix), readers[0])
    try:
        examples = loaded = read(Path(path))
    except Unlabelled as err:
        raise StepstoneError(f"{err}; --data-file needs gold labels") from None
    if not examples:
        raise StepstoneError(f"{path}: no examples in the file")
    examples = examples[:limit] if limit is not None else examples
    if task.open_labels:
        return _map_open_labels(task, examples)
    _check_labels(task, examples, str(path), loaded if isinstance(loaded, Examples) else None)
    return examples
