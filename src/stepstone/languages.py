"""Languages as data: for every evaluation language of every task, its name, family, script and resource level
(CC-100 pretraining data size, Conneau et al. 2020; Joshi et al. 2020 class), read from a packaged table that
cites each column's source. The report and `stepstone summary --by tier|family|script` group per-language scores
and gains by it.

INTERFACE STUB (issue 16): the signatures below are the shared interface; the implementation lands with the
languages table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

GROUPINGS = ("tier", "family", "script")  # what `--by` accepts
UNKNOWN = "unknown"  # the group of a language code the table does not hold


@dataclass(frozen=True)
class Language:
    code: str  # as the tasks name it (ISO 639-1 where one exists)
    name: str
    family: str
    script: str
    cc100_gib: float | None  # size of its CC-100 data in GiB (XLM-R's pretraining corpus)
    joshi_class: int | None  # 0-5 (Joshi et al. 2020)

    @property
    def tier(self) -> str:
        """high / medium / low resource (the rule is in the table's header)."""
        raise NotImplementedError


def language(code: str) -> Language | None:
    """The table's row for `code`; None when it has none."""
    raise NotImplementedError


def group_of(code: str, by: str) -> str:
    """The group of `code` under grouping `by` (one of GROUPINGS); UNKNOWN for a code not in the table. An
    unknown grouping raises StepstoneError naming the valid ones."""
    raise NotImplementedError


def group_scores(scores: Mapping[str, float], by: str) -> dict[str, float]:
    """Mean of `scores` (language -> number) per group under `by`, groups in a stable order."""
    raise NotImplementedError
