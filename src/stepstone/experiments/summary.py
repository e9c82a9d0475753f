"""An XTREME-style summary of evaluation reports (the JSON files `stepstone evaluate` writes).

Each task's score is its main metric averaged over the evaluated languages (English included, as
XTREME reports it; the zero-shot average without English is shown too). Tasks are grouped into
XTREME's categories; the overall score averages the tasks (XTREME) and the categories are reported
beside it (XTREME-R's view).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import StepstoneError

CATEGORIES = {"xnli": "classification", "pawsx": "classification", "xcopa": "classification",
              "udpos": "structured prediction", "panx": "structured prediction",
              "xquad": "question answering", "mlqa": "question answering", "tydiqa": "question answering",
              "bucc": "retrieval", "tatoeba": "retrieval"}


@dataclass(frozen=True)
class TaskScore:
    task: str
    category: str
    metric: str
    languages: int
    average: float
    zero_shot: float | None  # without English; None if only English was evaluated
    source: str


@dataclass(frozen=True)
class Summary:
    tasks: list[TaskScore]
    categories: dict[str, float]
    overall: float

    def to_dict(self) -> dict:
        return {"tasks": [t.__dict__ for t in self.tasks], "categories": self.categories, "overall": self.overall}


def collect(paths: Sequence[Path]) -> list[Path]:
    """Evaluation reports: JSON files as given, and every evaluations/*.json inside run folders."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted((path / "evaluations").glob("*.json")))
        elif path.is_file():
            found.append(path)
        else:
            raise StepstoneError(f"'{path}' is neither an evaluation report nor a run folder")
    if not found:
        raise StepstoneError("no evaluation reports found: run `stepstone evaluate` first")
    return found


def summarize(paths: Sequence[Path]) -> Summary:
    scores: dict[str, TaskScore] = {}
    for path in collect(paths):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            task, metric, per_lang = report["task"], report["metric"], report["scores"]
            if not isinstance(per_lang, dict) or not per_lang:  # the average below needs a score per language
                raise ValueError(f"'scores' must be an object with one entry per language, got {json.dumps(per_lang)}")
            values = {lang: float(s[metric]) for lang, s in per_lang.items()}
        except KeyError as err:
            raise StepstoneError(f"{path}: not a stepstone evaluation report (missing key {err})") from None
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise StepstoneError(f"{path}: not a stepstone evaluation report ({err})") from None
        if task in scores:
            raise StepstoneError(f"task '{task}' is reported twice: {scores[task].source} and {path}")
        others = [v for lang, v in values.items() if lang != "en"]
        scores[task] = TaskScore(task, CATEGORIES.get(task, "other"), metric, len(values),
                                 sum(values.values()) / len(values), sum(others) / len(others) if others else None,
                                 str(path))
    tasks = sorted(scores.values(), key=lambda t: (t.category, t.task))
    categories: dict[str, list[float]] = {}
    for t in tasks:
        categories.setdefault(t.category, []).append(t.average)
    return Summary(tasks, {c: sum(v) / len(v) for c, v in categories.items()},
                   sum(t.average for t in tasks) / len(tasks))
