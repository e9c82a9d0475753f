"""The cell record of a grid: one line of GRID_DIR/cells.jsonl, typed; the setup vocabulary; the best-stack rule
(and the pick of a rank cell where the grid picks by an estimator).

A record keeps which keys its line had: a key written as null and a key not written differ in the committed
files (an intermediate cell has no 'target', a full fine-tune cell no 'intermediate', records older than the
did-not-learn check no 'learning'), so `CellRecord.to_json` writes back exactly the line `from_json` read.
Keys a newer stepstone writes and this one does not know are kept in `extra` and written back too.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable

from ..artifacts import append_line
from ..errors import StepstoneError, choices
from ..specs import Block

CELLS = "cells.jsonl"


class Value(str, Enum):
    """An enum whose members read as their values in text (str(), f-strings), as records and tables show them."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Kind(Value):
    """What a cell does: trains an intermediate adapter, trains + evaluates a target run, or evaluates retrieval."""

    INTERMEDIATE = "intermediate"
    TARGET = "target"
    RETRIEVAL = "retrieval"
    RANK = "rank"  # ranks a target's intermediate adapters before its Stack cells (stepstone.ranking)


class Status(Value):
    OK = "ok"
    ERROR = "error"


class Members(Value):
    """How a composition block of the grid takes the intermediate adapters."""

    EACH = "each"  # one cell per intermediate task: Block(intermediate) + target
    ALL = "all"  # one cell over every intermediate task: Block(all of them) + target


# Per block: one cell per intermediate or one over all. A block registered in stepstone.specs.Block becomes a
# grid setup with this one line (tests/unit/test_cells.py checks that every block has it).
BLOCK_MEMBERS: dict[Block, Members] = {Block.STACK: Members.EACH, Block.FUSE: Members.ALL, Block.AVERAGE: Members.ALL}

# The one vocabulary of setups ("composition" in a record): how a cell uses the intermediate tasks. The values are
# in committed cells.jsonl files. Built from Block so every composition block is a setup; the order is the
# report's column order.
Setup = Value("Setup", [
    ("INTERMEDIATE", "intermediate"),  # an intermediate adapter (or full fine-tune) being trained
    ("NONE", "none"),  # the target adapter alone
    *((block.name, block.value) for block in Block),  # Block(intermediates) + target (BLOCK_MEMBERS says which)
    ("MULTITASK", "multitask"),  # Stack(one adapter trained on every intermediate task) + target
    ("SEQUENTIAL", "sequential"),  # Stack(one adapter trained on a chain of tasks, one after another) + target
    ("SIZE", "stack-size"),  # Stack(an intermediate adapter trained on N examples: the data-size axis) + target
    ("FULL", "full"),  # plain full fine-tuning of the target task
    ("FULL_AFTER", "full-after-intermediate"),  # full fine-tuning initialised from a full intermediate run
], module=__name__)
Setup.__doc__ = "How a cell uses the intermediate tasks (the 'composition' of its record)."

BLOCK_OF: dict = {Setup(block.value): block for block in Block}  # the setups that compose zoo adapters
GRID_SETUPS: tuple = (Setup.NONE, *BLOCK_OF, Setup.MULTITASK)  # what a grid's `setups` may list
# what a grid runs when its spec names no setups: the paper's comparisons (Average is asked for by name)
DEFAULT_SETUPS: tuple = (Setup.NONE, Setup.STACK, Setup.FUSE, Setup.MULTITASK)

DEV = "dev"  # a grid's stack_pick for the best-stack rule below (best_intermediate), its choice before issue 15
NUMERIC = ("seed", "trainable_parameters", "trainable_percent", "weights_bytes", "train_seconds", "peak_rss_mb", "dev",
           "intermediate_size", "train_examples")
VERDICTS = ("learned", "not-learned", "unknown")  # stepstone.health.Verdict
_ENUMS = {"kind": Kind, "status": Status, "composition": Setup}


@dataclass(frozen=True)
class CellRecord:
    """One cell of a grid: what it is (id .. seed) and what it gave (status .. cell_seconds)."""

    id: str
    kind: Kind | None = None
    target: str | None = None  # target and retrieval cells: the evaluated task
    train_task: str | None = None  # target cells: the task trained (the target's, or its stand-in)
    task: str | None = None  # intermediate cells: the task trained ('multitask': all of them)
    method: str | None = None  # bottleneck | lora | full; None: the bare backbone (retrieval)
    composition: Setup | None = None
    intermediate: str | None = None  # the intermediate task composed (per-intermediate setups, retrieval; sequential:
    # the chain's label, e.g. 'sst2-then-anli')
    intermediate_size: int | None = None  # stack-size cells and their intermediate cells: its training examples
    chain: list | None = None  # sequential cells and their intermediate cells: the chain's tasks in training order
    backbone: str | None = None  # the backbone's name (id or path) the cell ran on (records since issue 16)
    seed: int | None = None
    train_language: str | None = None
    status: Status | None = None
    error: str | None = None
    metric: str | None = None
    scores: dict | None = None  # language -> main metric
    secondary: dict | None = None  # the evaluation's other metrics: name -> {language: number} (QA exact_match)
    perturbed: dict | None = None  # the grid's `perturb`: perturbation label -> {language: main metric}
    domain: dict | None = None  # a target's `data_files`: file label -> main metric on that file
    # the main metric's per-example statistics (experiments.stats): {"statistic": "ratio" | "f1", "scores":
    # {language: stats.encode(...)}, "perturbed": {label: {language: ...}}} (trained targets, since issue 18)
    statistics: dict | None = None
    artifact: str | None = None
    dev: float | None = None  # English dev score of the trained run's main metric
    trainable_parameters: int | None = None
    trainable_percent: float | None = None
    weights_bytes: int | None = None
    train_seconds: float | None = None
    peak_rss_mb: float | None = None
    train_examples: int | None = None  # trained cells: the examples the run trained on (its manifest; since issue 18)
    learning: dict | None = None  # stepstone.health's verdict
    ranking: dict | None = None  # rank cells: stepstone.ranking.Ranking.to_dict()
    stack_pick: str | None = None  # rank cells: the grid's stack_pick ('dev' or the estimator that picks)
    cell_seconds: float | None = None  # wall time: training + evaluation
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as read
    recorded: frozenset = field(default=frozenset(), compare=False, repr=False)  # the keys the line holds

    @classmethod
    def of(cls, **values) -> CellRecord:
        """A record holding exactly these keys (unknown ones go to `extra`)."""
        known = {k: v for k, v in values.items() if k in _FIELDS}
        for key, enum in _ENUMS.items():
            if known.get(key) is not None:
                known[key] = enum(known[key])
        return cls(**known, extra={k: v for k, v in values.items() if k not in _FIELDS}, recorded=frozenset(values))

    @property
    def examples(self) -> int | None:
        """A trained cell's training examples: as its run counted them, else (records before `train_examples`) its
        `intermediate_size`; None where neither is recorded."""
        return self.train_examples if self.train_examples is not None else self.intermediate_size

    def updated(self, **values) -> CellRecord:
        """This record with more keys (later values win), as a dict merge would give."""
        return CellRecord.of(**{**self.as_dict(), **values})

    def as_dict(self) -> dict:
        """The keys the record holds, enums as their values (what the JSON line holds)."""
        out = {k: getattr(self, k) for k in _FIELDS if k in self.recorded}
        out = {k: v.value if isinstance(v, Enum) else v for k, v in out.items()}
        return {**out, **self.extra}

    def to_json(self) -> str:
        """The cells.jsonl line, without its newline: the bytes the grid has always written for this record."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, line: str, where: str, strict: bool = True) -> CellRecord:
        """Parse one line. strict (the report): every field checked, errors say which; not strict (the runner
        resuming): a JSON object with an 'id' is enough, anything else is 'not a cell record'."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise StepstoneError(f"{where}: " + (f"not valid JSON ({err.msg})" if strict else "not a cell record")) \
                from None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str if strict else object) \
                or "id" not in data:
            raise StepstoneError(f"{where}: " + ("expected a JSON object with a string 'id'" if strict
                                                 else "not a cell record"))
        if strict:
            _check(data, where)
        for key, enum in _ENUMS.items():
            valid = [m.value for m in enum]
            if data.get(key) is not None and data[key] not in valid:
                raise StepstoneError(f"{where}: {key} {data[key]!r} is not one of {choices(valid)}")
        return cls.of(**data)

    # dict-style reading, for code that reads a record by key name (and records still given as plain dicts)
    def __getitem__(self, key: str) -> Any:
        if key not in self.recorded:
            raise KeyError(key)
        return getattr(self, key) if key in _FIELDS else self.extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self.recorded else default

    def __contains__(self, key: str) -> bool:
        return key in self.recorded


_FIELDS = tuple(f.name for f in dataclasses.fields(CellRecord) if f.name not in ("extra", "recorded"))


def _check(cell: dict, where: str) -> None:
    """The fields the report computes with (kind and status present, numbers numbers, ok evaluations scored)."""
    if cell.get("kind") not in [k.value for k in Kind]:
        raise StepstoneError(f"{where}: kind {cell.get('kind')!r} is not one of {choices(k.value for k in Kind)}")
    if cell.get("status") not in [s.value for s in Status]:
        raise StepstoneError(f"{where}: status {cell.get('status')!r} is not one of "
                             f"{choices(s.value for s in Status)}")
    for key in NUMERIC:
        if not (cell.get(key) is None or _number(cell[key])):
            raise StepstoneError(f"{where}: '{key}' must be a number or null, got {cell[key]!r}")
    learning = cell.get("learning")
    if not (learning is None or isinstance(learning, dict) and learning.get("verdict") in VERDICTS):
        raise StepstoneError(f"{where}: 'learning' must be null or an object with a 'verdict' of "
                             f"{choices(VERDICTS)}, got {json.dumps(learning)[:60]}")
    if cell["status"] == "ok" and cell["kind"] == "rank":
        ranking = cell.get("ranking")
        if not isinstance(cell.get("target"), str) or not isinstance(ranking, dict) \
                or not isinstance(ranking.get("rows"), list) or not isinstance(ranking.get("estimators"), list):
            raise StepstoneError(f"{where}: ok rank cell '{cell['id']}' needs a 'target' and a 'ranking' with "
                                 "'estimators' and 'rows'")
    elif cell["status"] == "ok" and cell["kind"] != "intermediate":
        scores = cell.get("scores")
        if not isinstance(cell.get("target"), str) or not isinstance(scores, dict) or not scores \
                or not all(_number(v) for v in scores.values()):
            raise StepstoneError(f"{where}: ok {cell['kind']} cell '{cell['id']}' needs a 'target' and "
                                 "'scores' as {language: number}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_cells(path: Path, strict: bool = False) -> dict[str, CellRecord]:
    """Cell id -> its last record in cells.jsonl (a retried cell's newest line wins); no file: no records.

    strict: every field checked (`CellRecord.from_json`). An unreadable last line without its newline is a write
    cut short by a kill: it is skipped and that cell reruns. Any other bad line is an error naming the file and
    line."""
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except UnicodeDecodeError as err:
        raise StepstoneError(f"{path}: not UTF-8 text ({err})") from None
    lines = text.splitlines()
    records: dict[str, CellRecord] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = CellRecord.from_json(line, f"{path}:{number}", strict)
        except StepstoneError:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise
        records[record.id] = record
    return records


def load_records(path: Path) -> dict[str, CellRecord]:
    """The records the runner resumes from (`read_cells` with the minimal check)."""
    return read_cells(path)


def append_cell(path: Path, record: CellRecord) -> None:
    append_line(path, record.to_json() + "\n")


def best_intermediate(records: Iterable, fallback: Callable[[], str | None] = lambda: None) -> str | None:
    """THE best-stack rule (the runner picks by it which stack gets every seed; the report shows its pick).

    `records`: the ok cells of one target, method and setup, over its intermediates (CellRecords or dicts). The
    intermediate whose cell at the first seed has the best English dev score; ties: the later name. No dev
    score to pick by: `fallback()`."""
    scored = [r for r in records if r.get("dev") is not None]
    if not scored:
        return fallback()
    first = min((r.get("seed") for r in scored), key=lambda seed: (seed is None, seed or 0))
    best = max((r for r in scored if r.get("seed") == first), key=lambda r: (r["dev"], str(r.get("intermediate"))))
    return best.get("intermediate")  # full fine-tune cells record none


def ranked_pick(record) -> str | None:
    """The intermediate a rank cell's `stack_pick` estimator ranks first (the Stack the grid then gives every
    seed); None where the cell failed, picks by dev, or its estimator scored no intermediate adapter."""
    from ..ranking.records import Ranking

    if record is None or record.get("status") != "ok" or record.get("stack_pick") in (None, DEV):
        return None
    return Ranking.from_dict(record["ranking"]).best_intermediate(record["stack_pick"])
