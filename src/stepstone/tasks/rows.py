"""Row converters: a dataset's rows (JSONL lines, hub rows, CSV records) -> canonical examples.

The shared part lives here: `RowError` and the field helpers, the `JsonlShape` vocabulary, and
`read_task_jsonl` / `convert_rows`, which run a shape's converter over numbered rows and turn a row's problem
into `SOURCE:LINE: what is wrong`. Each shape's converter lives with the task family that owns the dataset
(ANLI in `tasks.classification`; HellaSwag, CommonsenseQA, Social IQa, COPA in `tasks.multiple_choice`) and is
registered there with `@row_shape`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable

from ..data.readers import Examples, Unlabelled, read_jsonl_rows
from ..errors import StepstoneError, choices

RowConverter = Callable[[dict, "int | None"], dict]  # (row, the task's number of options or None) -> example


class RowError(Exception):
    """A problem with one row; the caller adds where it is."""


def get(row: dict, key: str):
    if key not in row:
        raise RowError(f"missing key '{key}'")
    return row[key]


def text(row: dict, key: str) -> str:
    if not isinstance(get(row, key), str):
        raise RowError(f"'{key}' must be a string, found {type(row[key]).__name__}")
    return row[key]


def index(value, n: int, key: str = "label") -> int:
    """An answer index given as an int or a string of digits, in range(n)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():  # int() refuses some digits, e.g. "²"
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        raise RowError(f"{key} '{value}' is not one of {', '.join(map(str, range(n)))}")
    return value


def letter(value, letters: list[str], key: str) -> int:
    if value not in letters:
        raise RowError(f"{key} '{value}' is not one of {', '.join(letters)}")
    return letters.index(value)


def join(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def count(found: int, n: int | None, noun: str) -> None:
    """A multiple-choice row has exactly the task's number of options (else collation would fail later)."""
    if n is not None and found != n:
        raise RowError(f"expected {n} {noun}, found {found}")


def numbered(row: dict, pattern: str) -> int:
    """How many option keys (e.g. choice1, choice2, ...) a row has."""
    return sum(1 for key in row if re.fullmatch(pattern, key))


class JsonlShape(str, Enum):
    """The row layouts `read_task_jsonl` understands; each one's converter is registered by its family."""

    ANLI = "anli"
    HELLASWAG = "hellaswag"
    COMMONSENSEQA = "commonsenseqa"
    SIQA = "siqa"
    COPA = "copa"


@dataclass(frozen=True)
class RowShape:
    convert: RowConverter
    label_key: str  # the key that holds the answer: a file where no row has one is unlabelled (SuperGLUE's tests)


_SHAPES: dict[JsonlShape, RowShape] = {}


def row_shape(shape: JsonlShape, label_key: str) -> Callable[[RowConverter], RowConverter]:
    """Register the decorated function as the converter of `shape` (once per shape)."""
    def register(convert: RowConverter) -> RowConverter:
        if shape in _SHAPES:
            raise ValueError(f"row shape '{shape.value}' is already registered")
        _SHAPES[shape] = RowShape(convert, label_key)
        return convert
    return register


def _convert(rows: Iterable[tuple[int, dict]], shape: JsonlShape | str, source: str,
             num_choices: int | None = None) -> tuple[list[dict], list[int]]:
    try:
        shape = JsonlShape(shape)
    except ValueError:
        raise StepstoneError(f"unknown row shape '{shape}' (valid: {choices(s.value for s in JsonlShape)})") from None
    convert, key = _SHAPES[shape].convert, _SHAPES[shape].label_key
    rows = list(rows)
    examples, lines = [], []
    for number, row in rows:
        try:
            examples.append(convert(row, num_choices))
            lines.append(number)
        except RowError as err:
            message = f"{source}:{number}: {err}"
            about_label = str(err).startswith((f"missing key '{key}'", f"{key} '"))
            if about_label and all(other.get(key) in (None, "", -1, "-1") for _, other in rows):
                raise Unlabelled(message) from None
            raise StepstoneError(message) from None
    return examples, lines


def read_task_jsonl(path: Path, shape: JsonlShape | str, num_choices: int | None = None) -> Examples:
    """A task's JSONL file converted to canonical examples; errors name the file and line.
    ANLI -> classification (label entailment/neutral/contradiction); the others -> multiple choice, each
    row required to have `num_choices` options when given (`FILE:LINE: expected 4 endings, found 5`)."""
    examples, lines = _convert(read_jsonl_rows(path), shape, str(path), num_choices)
    return Examples(path, examples, lines)


def convert_rows(rows: Iterable[dict], shape: JsonlShape | str, source: str,
                 num_choices: int | None = None) -> list[dict]:
    """The same conversion for rows from elsewhere (e.g. a hub dataset); errors say `SOURCE:ROW` (1-based)."""
    return _convert(enumerate(rows, 1), shape, source, num_choices)[0]


def jsonl_reader(shape: JsonlShape, num_choices: int | None = None) -> Callable[[Path], Examples]:
    """A local-file reader (for `sources.Local`) of one JSONL shape."""
    return lambda path: read_task_jsonl(path, shape, num_choices)


def hub_rows(shape: JsonlShape, num_choices: int | None = None) -> Callable[[Any, str], list[dict]]:
    """A hub converter (for `sources.Hub`) whose rows have the same layout as the JSONL files."""
    return lambda ds, lang: convert_rows(ds, shape, f"hub:{shape.value}", num_choices)
