"""What `stepstone rank` returns and the grid records: a `Ranking` of candidates (zoo adapters, and the bare
backbone as "none") for one target, with each estimator's score, rank and seconds per candidate.

`Ranking.to_dict()` is the JSON of `stepstone rank --json` and the `ranking` field of a grid's rank cell
(cells.jsonl); `Ranking.from_dict` reads it back (the report does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import StepstoneError, choices, did_you_mean

NONE = "none"  # the candidate that is no intermediate adapter: the bare backbone (target adapter alone)


class Estimator(str, Enum):
    """The estimators, cheapest first (README "Choosing intermediate tasks: stepstone rank")."""

    LOGME = "logme"  # You et al. (ICML 2021): evidence of a Bayesian linear model of labels given features
    SEMB = "semb"  # dataset similarity (Poth et al. 2021 SEmb; Vu et al. 2020 TextEmb): cosine of mean embeddings
    PROXY = "proxy"  # a short target-adapter training on each candidate's Stack, scored on English dev

    def __str__(self) -> str:
        return self.value


DEFAULT_ESTIMATORS = (Estimator.LOGME, Estimator.SEMB)  # the cheap ones: proxy trains, so it is asked for


def parse_estimators(text: str | list[str] | tuple[str, ...]) -> tuple[Estimator, ...]:
    """'logme,semb' (or a list of names) -> estimators in the given order, each once; unknown names list the
    valid ones."""
    names = [n.strip() for part in ([text] if isinstance(text, str) else text) for n in str(part).split(",")]
    names = [n for n in names if n]
    valid = [e.value for e in Estimator]
    for name in names:
        if name not in valid:
            raise StepstoneError(f"unknown estimator '{name}' (valid: {choices(valid)})" + did_you_mean(name, valid))
    if not names:
        raise StepstoneError(f"no estimator given (valid: {choices(valid)})")
    return tuple(Estimator(n) for n in dict.fromkeys(names))


@dataclass(frozen=True)
class Score:
    """One estimator's score of one candidate (higher = predicted to help more), or None with the reason it
    does not apply (`note`); `seconds`: what computing it cost (0.0 when it came from the feature cache)."""

    value: float | None
    seconds: float = 0.0
    note: str | None = None
    cached: bool = False

    def __post_init__(self):
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"a score must be finite (got {self.value})")
        if (self.value is None) != (self.note is not None):
            raise ValueError("a score is a value or a note saying why there is none")

    def to_dict(self) -> dict:
        return {"value": self.value, "seconds": round(self.seconds, 3), "note": self.note, "cached": self.cached}

    @classmethod
    def from_dict(cls, data: dict) -> Score:
        return cls(data.get("value"), float(data.get("seconds") or 0.0), data.get("note"), bool(data.get("cached")))


@dataclass(frozen=True)
class Row:
    """A candidate: a zoo entry (or NONE), the intermediate task(s) it was trained on, its method, and a
    Score per estimator. `intermediate`: the task name a grid's Stack cell records ('multitask' style names for
    several tasks joined by '+'); None for NONE."""

    candidate: str
    intermediate: str | None
    method: str | None
    scores: dict[str, Score] = field(default_factory=dict)

    def value(self, estimator: Estimator | str) -> float | None:
        score = self.scores.get(str(estimator))
        return None if score is None else score.value

    def to_dict(self) -> dict:
        return {"candidate": self.candidate, "intermediate": self.intermediate, "method": self.method,
                "scores": {k: s.to_dict() for k, s in self.scores.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Row:
        return cls(data["candidate"], data.get("intermediate"), data.get("method"),
                   {k: Score.from_dict(v) for k, v in (data.get("scores") or {}).items()})


@dataclass(frozen=True)
class Ranking:
    """Every candidate's scores for one target. `rows` keep the candidates' order (NONE first); `order(e)` is
    estimator e's ranking, best first. `examples`: the English training examples the estimators read;
    `reductions`: per estimator, what its features are (README)."""

    target: str
    backbone: str
    examples: int
    estimators: tuple[Estimator, ...]
    rows: tuple[Row, ...]
    reductions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # e.g. "logme does not apply to QA targets: ranked by proxy instead"

    def order(self, estimator: Estimator | str) -> list[Row]:
        """The rows estimator `estimator` scored, best first (ties: candidate name); unscored rows are left out."""
        scored = [r for r in self.rows if r.value(estimator) is not None]
        return sorted(scored, key=lambda r: (-r.value(estimator), r.candidate))

    def rank_of(self, estimator: Estimator | str, candidate: str) -> int | None:
        """1-based rank of `candidate` by `estimator` (None: not scored)."""
        names = [r.candidate for r in self.order(estimator)]
        return names.index(candidate) + 1 if candidate in names else None

    def winner(self, estimator: Estimator | str | None = None) -> Row | None:
        """The top row of `estimator` (default: the first estimator that scored anything)."""
        for e in ([estimator] if estimator is not None else self.estimators):
            order = self.order(e)
            if order:
                return order[0]
        return None

    def best_intermediate(self, estimator: Estimator | str) -> str | None:
        """The top-ranked candidate that is an intermediate adapter (NONE skipped): the Stack a grid gives
        every seed when it picks by this estimator."""
        for row in self.order(estimator):
            if row.candidate != NONE:
                return row.intermediate
        return None

    def on(self, estimator: Estimator | str | None = None) -> str | None:
        """The winner's `--on` value for `stepstone train` ('Stack(NAME)'); None when the bare backbone wins."""
        row = self.winner(estimator)
        return None if row is None or row.candidate == NONE else f"Stack({row.candidate})"

    def to_dict(self) -> dict:
        return {"target": self.target, "backbone": self.backbone, "examples": self.examples,
                "estimators": [e.value for e in self.estimators], "reductions": dict(self.reductions),
                "notes": list(self.notes), "rows": [r.to_dict() for r in self.rows],
                "ranks": {e.value: [r.candidate for r in self.order(e)] for e in self.estimators},
                "on": {e.value: self.on(e) for e in self.estimators}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ranking:
        return cls(data["target"], data["backbone"], int(data["examples"]),
                   tuple(Estimator(e) for e in data["estimators"]), tuple(Row.from_dict(r) for r in data["rows"]),
                   dict(data.get("reductions") or {}), tuple(data.get("notes") or ()))
