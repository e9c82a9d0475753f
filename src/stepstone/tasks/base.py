"""TaskSpec: what a task is (format, labels, metric, languages) and where its data comes from."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from ..errors import StepstoneError, choices
from ..metrics import Metric
from ..registry import Registry


OTHER_LABEL = "<other>"  # open label sets: tags too rare (or unseen) in training


class TaskFormat(str, Enum):
    """The shape of a task's examples; each format has one head type and one encoder."""

    CLASSIFICATION = "classification"  # {"text", ["text_pair"], "label": str}
    TAGGING = "tagging"  # {"tokens": [str], "tags": [str]}
    QA = "qa"  # SQuAD v1.1: {"id", "context", "question", "answers": {"text": [str], "answer_start": [int]}}
    MULTIPLE_CHOICE = "multiple_choice"  # {"context", "choices": [str], "label": int}
    RETRIEVAL = "retrieval"  # no training: Tatoeba {"source", "target"}; BUCC one {"source", "target", "gold"}


class Split(str, Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class DataSource(Protocol):
    """Where a task's examples come from: returns canonical dicts for one split and language."""

    def load(self, split: Split, lang: str, data_dir: Path | None) -> list[dict]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    labels: label names in head order (classification / tagging); empty for QA and multiple choice.
    num_choices: options per example (multiple choice only).
    languages: every language the source provides (also by hub); train_language: where training data is.
    benchmark_languages: the benchmark's official list (XTREME's, Hu et al. 2020), a subset of `languages`
    and the default of `evaluate`; empty = all of `languages`. Any other language evaluates when its local
    file exists, reported as outside the benchmark's list.
    train_from / dev_from: the task whose English train / dev split this one uses, only where the task has
    no English split of its own (XNLI trains on MNLI; XQuAD, which has only a test set, on SQuAD v1.1;
    XCOPA, which has no English, on COPA); None = its own.
    open_labels: > 0 for tasks whose label set comes from the training data (CCG supertags): tags seen at
    least this many times, in order of frequency, plus OTHER_LABEL for the rest; recorded in manifests.
    """

    name: str
    format: TaskFormat
    metric: Metric
    languages: tuple[str, ...]
    source: DataSource
    description: str
    labels: tuple[str, ...] = ()
    num_choices: int = 0
    train_language: str = "en"
    train_from: str | None = None
    dev_from: str | None = None
    open_labels: int = 0
    unanswerable: bool = False  # extractive QA with questions that have no answer (SQuAD v2.0)
    benchmark_languages: tuple[str, ...] = ()

    @property
    def official_languages(self) -> tuple[str, ...]:
        return self.benchmark_languages or self.languages

    @property
    def trainable(self) -> bool:
        return self.format is not TaskFormat.RETRIEVAL

    def __post_init__(self):
        needs_labels = self.format in (TaskFormat.CLASSIFICATION, TaskFormat.TAGGING)
        if needs_labels != (bool(self.labels) or self.open_labels > 0):
            raise ValueError(f"task {self.name}: labels are required exactly for classification and tagging")
        if (self.format is TaskFormat.MULTIPLE_CHOICE) != (self.num_choices > 1):
            raise ValueError(f"task {self.name}: num_choices > 1 is required exactly for multiple choice")
        if not set(self.benchmark_languages) <= set(self.languages):
            raise ValueError(f"task {self.name}: benchmark languages must be among its languages")

    def derive_labels(self, examples: list[dict]) -> "TaskSpec":
        """This task with its open label set taken from training `examples` (tagging)."""
        from collections import Counter
        from dataclasses import replace

        counts = Counter(tag for e in examples for tag in e["tags"])
        kept = [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= self.open_labels]
        return replace(self, labels=(*kept, OTHER_LABEL))

    def check_language(self, lang: str, split: Split | None = None, data_dir: Path | None = None) -> str:
        """`lang` if the task has it, or (with a data dir) if a local file for `split` in it exists: e.g.
        XTREME-R's extra languages."""
        if lang in self.languages:
            return lang
        has_local = getattr(self.source, "has_local", None)
        # a hub-only task (MNLI, SNLI) has no local layout that could hold another language
        if data_dir is None or split is None or has_local is None or getattr(self.source, "local", None) is None:
            raise StepstoneError(f"task '{self.name}' has no language '{lang}' (valid: {choices(self.languages)})")
        if has_local(split, lang, Path(data_dir)):
            return lang
        looked = self.source.local.looked_for(split, lang)
        raise StepstoneError(f"task '{self.name}' has no language '{lang}' (valid: {choices(self.languages)}; or "
                             f"any language with a local {split.value} file, none under {data_dir}: looked for {looked})")


TASKS: Registry[TaskSpec] = Registry("task")


def register(task: TaskSpec) -> TaskSpec:
    return TASKS.register(task.name, task)


def define(name: str, format: TaskFormat, metric: Metric, description: str, source: DataSource, *,
           languages: tuple[str, ...] = ("en",), labels: tuple[str, ...] = (), num_choices: int = 0,
           train_from: str | None = None, dev_from: str | None = None, open_labels: int = 0,
           unanswerable: bool = False, benchmark_languages: tuple[str, ...] = ()) -> TaskSpec:
    """Register a task: the family modules' one call per task (English-only unless `languages` says more)."""
    return register(TaskSpec(name=name, format=format, metric=metric, languages=languages, source=source,
                             description=description, labels=labels, num_choices=num_choices,
                             train_from=train_from, dev_from=dev_from, open_labels=open_labels,
                             unanswerable=unanswerable, benchmark_languages=benchmark_languages))
