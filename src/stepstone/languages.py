"""Languages as data: for every evaluation language of every task, its name, family, script and resource level
(CC-100 pretraining data size, Conneau et al. 2020; Joshi et al. 2020 class), read from a packaged table
(`languages.tsv`, shipped with the package) that cites each column's source in its header. The report and
`stepstone summary --by tier|family|script` group per-language scores and gains by it.

Adding a language: one row in languages.tsv (values from the sources its header names; an empty cell where a
source has none). Adding a grouping: one entry in `_GROUPERS` (and GROUPINGS)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Callable, Iterable, Mapping

from .errors import StepstoneError

GROUPINGS = ("tier", "family", "script")  # what `--by` accepts
UNKNOWN = "unknown"  # the group of a language code the table does not hold
TABLE = "languages.tsv"  # package data next to this module
COLUMNS = ("code", "name", "family", "script", "cc100_gib", "joshi_class")


class Tier(str, Enum):
    """Resource tier from the Joshi et al. 2020 class: high = 4-5, medium = 3, low = 0-2."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


TIERS = tuple(t.value for t in Tier)  # the order tier groups are listed in (UNKNOWN after them)


@dataclass(frozen=True)
class Language:
    code: str  # as the tasks name it (ISO 639-1 where one exists)
    name: str
    family: str
    script: str
    cc100_gib: float | None  # size of its CC-100 data in GiB (XLM-R's pretraining corpus)
    joshi_class: int | None  # 0-5 (Joshi et al. 2020)

    def __post_init__(self) -> None:
        for column in ("code", "name", "family", "script"):
            if not getattr(self, column):
                raise ValueError(f"language {self.code!r}: empty {column}")
        if self.cc100_gib is not None and not (math.isfinite(self.cc100_gib) and self.cc100_gib > 0):
            raise ValueError(f"language {self.code!r}: cc100_gib must be a number > 0, got {self.cc100_gib}")
        if self.joshi_class is not None and self.joshi_class not in range(6):
            raise ValueError(f"language {self.code!r}: joshi_class must be 0-5, got {self.joshi_class}")

    @property
    def tier(self) -> str:
        """high (Joshi class 4-5) / medium (3) / low (0-2); UNKNOWN without a class (the rule is in the table's
        header; CC-100 size is not used: every real language in the table has a class)."""
        if self.joshi_class is None:
            return UNKNOWN
        return (Tier.HIGH if self.joshi_class >= 4 else Tier.MEDIUM if self.joshi_class == 3 else Tier.LOW).value


def parse_table(text: str, source: str = TABLE) -> dict[str, Language]:
    """The rows of a languages table (tab-separated, `#` lines are comments, empty cell = None) by code.
    A malformed row raises StepstoneError naming `source:line`."""
    rows: dict[str, Language] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        try:
            if len(cells) != len(COLUMNS):
                raise ValueError(f"{len(cells)} columns, expected {len(COLUMNS)} ({', '.join(COLUMNS)})")
            code, name, family, script, gib, joshi = (c.strip() for c in cells)
            row = Language(code, name, family, script, float(gib) if gib else None, int(joshi) if joshi else None)
            if code in rows:
                raise ValueError(f"language {code!r} is listed twice")
        except ValueError as err:
            raise StepstoneError(f"{source}:{number}: {err}") from None
        rows[code] = row
    return rows


@lru_cache(maxsize=1)
def table() -> dict[str, Language]:
    """The packaged table, read once (importlib.resources: works from a checkout and an installed wheel)."""
    from importlib.resources import files

    return parse_table(files(__package__).joinpath(TABLE).read_text(encoding="utf-8"))


def language(code: str) -> Language | None:
    """The table's row for `code`; None when it has none."""
    return table().get(code)


_GROUPERS: dict[str, Callable[[Language], str]] = {
    "tier": lambda lang: lang.tier,
    "family": lambda lang: lang.family,
    "script": lambda lang: lang.script,
}


def _check(by: str) -> Callable[[Language], str]:
    if by not in _GROUPERS:
        raise StepstoneError(f"unknown language grouping '{by}' (valid: {', '.join(GROUPINGS)})")
    return _GROUPERS[by]


def group_of(code: str, by: str) -> str:
    """The group of `code` under grouping `by` (one of GROUPINGS); UNKNOWN for a code not in the table. An
    unknown grouping raises StepstoneError naming the valid ones."""
    grouper = _check(by)
    row = language(code)
    return UNKNOWN if row is None else grouper(row)


def ordered(names: Iterable[str], by: str) -> list[str]:
    """Group names of grouping `by` in the stable order every listing uses: tiers high -> low, other groupings
    alphabetical; UNKNOWN always last."""
    _check(by)

    def key(group: str) -> tuple:
        if group == UNKNOWN:
            return (2, 0, "")
        return (0, TIERS.index(group), "") if by == "tier" else (1, 0, group.lower())

    return sorted(set(names), key=key)


def groups(codes: Iterable[str], by: str) -> dict[str, list[str]]:
    """The languages of `codes` per group under `by` (groups in a stable order, codes in their given order)."""
    _check(by)
    found: dict[str, list[str]] = {}
    for code in codes:
        found.setdefault(group_of(code, by), []).append(code)
    return {g: found[g] for g in ordered(found, by)}


def group_scores(scores: Mapping[str, float], by: str) -> dict[str, float]:
    """Mean of `scores` (language -> number) per group under `by`, groups in a stable order."""
    return {group: sum(scores[c] for c in codes) / len(codes) for group, codes in groups(scores, by).items()}
