"""An XTREME-style summary of evaluation reports (the JSON files `stepstone evaluate` writes).

Each task's score is its main metric averaged over the evaluated languages (English included, as
XTREME reports it; the zero-shot average without English is shown too). Tasks are grouped into
XTREME's categories; the overall score averages the tasks (XTREME) and the categories are reported
beside it (XTREME-R's view).

QA reports (metrics with exact_match beside the main F1) also get their exact match averaged the same way, as
XTREME reports both. `by` (tier / family / script, stepstone.languages) groups each task's languages by the
languages table: the mean main metric per group and the number of languages in it, and each group's mean over
the tasks that have it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import StepstoneError
from ..languages import groups, ordered

EXACT_MATCH = "exact_match"  # shown beside the main metric when every language of a report has it (QA)

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
    exact_match: float | None = None  # QA: exact match averaged like the main metric; None for other reports
    groups: dict[str, "GroupScore"] | None = None  # with `by`: group -> its languages' mean main metric

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("exact_match", "groups")}
        if self.exact_match is not None:
            out["exact_match"] = self.exact_match
        if self.groups is not None:
            out["groups"] = {g: s.__dict__ for g, s in self.groups.items()}
        return out


@dataclass(frozen=True)
class GroupScore:
    mean: float  # the main metric averaged over the group's languages
    languages: tuple[str, ...]  # the group's languages in this task


@dataclass(frozen=True)
class Summary:
    tasks: list[TaskScore]
    categories: dict[str, float]
    overall: float
    by: str | None = None  # the language grouping, when asked for
    group_means: dict[str, float] | None = None  # with `by`: each group's mean over the tasks that have it

    def to_dict(self) -> dict:
        out = {"tasks": [t.to_dict() for t in self.tasks], "categories": self.categories, "overall": self.overall}
        if self.by is not None:
            out.update(by=self.by, group_means=self.group_means)
        return out


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


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _read(path: Path) -> tuple[str, str, dict[str, dict]]:
    """(task, main metric, language -> its metrics) of one evaluation report."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        task, metric, per_lang = report["task"], report["metric"], report["scores"]
        if not isinstance(per_lang, dict) or not per_lang:  # the average below needs a score per language
            raise ValueError(f"'scores' must be an object with one entry per language, got {json.dumps(per_lang)}")
        for scores in per_lang.values():
            float(scores[metric])  # each language has a number for the main metric
        return task, metric, per_lang
    except KeyError as err:
        raise StepstoneError(f"{path}: not a stepstone evaluation report (missing key {err})") from None
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise StepstoneError(f"{path}: not a stepstone evaluation report ({err})") from None


def _task_score(path: Path, task: str, metric: str, per_lang: dict[str, dict], by: str | None) -> TaskScore:
    values = {lang: float(s[metric]) for lang, s in per_lang.items()}
    others = [v for lang, v in values.items() if lang != "en"]
    # QA: exact match beside the main F1, when every language has it (the SQuAD/MLQA metric pair)
    qa = metric != EXACT_MATCH and all(isinstance(s.get(EXACT_MATCH), (int, float)) for s in per_lang.values())
    grouped = None if by is None else {g: GroupScore(_mean([values[c] for c in codes]), tuple(codes))
                                       for g, codes in groups(values, by).items()}
    return TaskScore(task, CATEGORIES.get(task, "other"), metric, len(values), _mean(list(values.values())),
                     _mean(others) if others else None, str(path),
                     _mean([float(s[EXACT_MATCH]) for s in per_lang.values()]) if qa else None, grouped)


def summarize(paths: Sequence[Path], by: str | None = None) -> Summary:
    """`by`: a language grouping (stepstone.languages.GROUPINGS) to break each task down by, or None."""
    if by is not None:
        ordered((), by)  # an unknown grouping fails before any report is read
    scores: dict[str, TaskScore] = {}
    for path in collect(paths):
        task, metric, per_lang = _read(path)
        if task in scores:
            raise StepstoneError(f"task '{task}' is reported twice: {scores[task].source} and {path}")
        scores[task] = _task_score(path, task, metric, per_lang, by)
    tasks = sorted(scores.values(), key=lambda t: (t.category, t.task))
    categories: dict[str, list[float]] = {}
    for t in tasks:
        categories.setdefault(t.category, []).append(t.average)
    group_means = None
    if by is not None:
        per_group: dict[str, list[float]] = {}
        for t in tasks:
            for g, s in (t.groups or {}).items():
                per_group.setdefault(g, []).append(s.mean)
        group_means = {g: _mean(per_group[g]) for g in ordered(per_group, by)}
    return Summary(tasks, {c: _mean(v) for c, v in categories.items()}, _mean([t.average for t in tasks]),
                   by, group_means)
