"""The toy tasks the project generates itself (stepstone.toy): one per task format, in three
"languages" (en, and xa / xb with half / all content words replaced), for tests and the demo."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import toy
from ..metrics import Metric
from .base import Split, TaskFormat, TaskSpec, register

_METRICS = {
    TaskFormat.CLASSIFICATION: Metric.ACCURACY,
    TaskFormat.TAGGING: Metric.SEQEVAL_F1,
    TaskFormat.QA: Metric.SQUAD,
    TaskFormat.MULTIPLE_CHOICE: Metric.ACCURACY,
}


@dataclass(frozen=True)
class ToySource:
    """Deterministic generated data (no files): stepstone.toy.generate."""

    task: str

    def load(self, split: Split, lang: str, data_dir: Path | None) -> list[dict]:
        return toy.generate(self.task, split.value, lang)

    def describe(self) -> str:
        return "generated (stepstone.toy)"


for _name, _toy in toy.TOY_TASKS.items():
    _format = TaskFormat(_toy.format)
    register(TaskSpec(
        name=_name,
        format=_format,
        metric=_METRICS[_format],
        languages=toy.TOY_LANGUAGES,
        source=ToySource(_name),
        description=_toy.description,
        labels=_toy.labels if _format in (TaskFormat.CLASSIFICATION, TaskFormat.TAGGING) else (),
        num_choices=4 if _format is TaskFormat.MULTIPLE_CHOICE else 0,
    ))
