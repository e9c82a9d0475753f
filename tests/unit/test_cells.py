"""The typed cell record (stepstone.experiments.cells): committed cells.jsonl files round-trip byte for byte, one
setup vocabulary covers every composition block, one best-stack rule serves the runner and the report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepstone.composition import refusal
from stepstone.errors import StepstoneError
from stepstone.experiments import CellRecord, GridSpec, Kind, Setup, Status, TargetSpec, best_intermediate, cells
from stepstone.experiments.cells import BLOCK_MEMBERS, BLOCK_OF, DEFAULT_SETUPS, GRID_SETUPS, Members, append_cell, read_cells
from stepstone.experiments.grid import _no_cell
from stepstone.specs import Block

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((ROOT / "docs" / "results").glob("**/cells.jsonl")) + sorted(
    (ROOT / "benchmarks").glob("**/cells.jsonl"))


# committed grid -> (lines, the kinds of cell it has); lines None: a grid still running, whose progress is committed
# as it goes (any number of lines, its kinds so far among those given)
EXPECTED = {"docs/results/cpu-small/cells.jsonl": (50, {Kind.INTERMEDIATE, Kind.TARGET, Kind.RETRIEVAL}),
            "docs/results/rank-cpu-small/cells.jsonl": (26, {Kind.INTERMEDIATE, Kind.TARGET, Kind.RANK}),
            "docs/results/cpu-medium/cells.jsonl": (159, {Kind.INTERMEDIATE, Kind.TARGET, Kind.RANK})}


def test_committed_cell_files_exist():
    assert [p.relative_to(ROOT).as_posix() for p in COMMITTED] == sorted(EXPECTED)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_every_committed_line_parses_and_reserialises_identically(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    count, kinds = EXPECTED[path.relative_to(ROOT).as_posix()]
    assert len(lines) == count if count is not None else lines
    for number, line in enumerate(lines, 1):
        record = CellRecord.from_json(line, f"{path}:{number}")
        assert record.to_json() == line
        assert CellRecord.from_json(line, "x", strict=False) == record
        assert isinstance(record.kind, Kind) and isinstance(record.status, Status)
        assert record.composition is None or isinstance(record.composition, Setup)
    records = read_cells(path, strict=True)
    found = {r.kind for r in records.values()}
    assert found == kinds if count is not None else found <= kinds


def test_absent_and_null_keys_stay_apart_and_unknown_keys_are_kept():
    line = json.dumps({"id": "a", "kind": "target", "status": "error", "error": None, "later": [1, 2]}, sort_keys=True)
    record = CellRecord.from_json(line, "f:1")
    assert record.to_json() == line
    assert record.extra == {"later": [1, 2]} and record["later"] == [1, 2]
    assert "target" not in record and record.get("target", "absent") == "absent" and record.target is None
    assert "error" in record and record["error"] is None
    with pytest.raises(KeyError):
        record["target"]
    more = record.updated(status="ok", scores={"de": 1.0})
    assert more.status is Status.OK and json.loads(more.to_json()) == {**json.loads(line), "status": "ok",
                                                                       "scores": {"de": 1.0}}


def test_the_runner_writes_the_bytes_it_always_wrote(tmp_path):
    values = {"id": "target/x/bottleneck/stack-a/seed0", "kind": "target", "train_language": "en", "target": "x",
              "train_task": "x", "method": "bottleneck", "composition": "stack", "intermediate": "a", "seed": 0,
              "status": "ok", "error": None, "dev": 81.0, "metric": "f1", "scores": {"de": 40.5, "en": 80},
              "learning": None, "cell_seconds": 1.5}
    append_cell(tmp_path / "cells.jsonl", CellRecord.of(**values))
    assert (tmp_path / "cells.jsonl").read_text() == json.dumps(values, sort_keys=True) + "\n"


def test_bad_enum_values_name_the_line_and_the_choices():
    with pytest.raises(StepstoneError, match=r"^f:3: composition 'pile' is not one of average, full, "
                                             r"full-after-intermediate, fuse, intermediate, multitask, none, sequential, stack, "
                                             r"stack-size$"):
        CellRecord.from_json('{"id": "a", "composition": "pile"}', "f:3", strict=False)
    with pytest.raises(StepstoneError, match=r"^f:1: not a cell record$"):
        CellRecord.from_json("[1]", "f:1", strict=False)


def test_every_block_is_a_setup_of_the_grid():
    assert set(BLOCK_MEMBERS) == set(Block)
    assert {s.value for s in BLOCK_OF} == {b.value for b in Block}
    assert all(Setup(b.value) in GRID_SETUPS for b in Block)
    assert [s.value for s in GRID_SETUPS] == ["none", "stack", "fuse", "average", "multitask"]
    assert [s.value for s in DEFAULT_SETUPS] == ["none", "stack", "fuse", "multitask"]  # average: asked by name
    assert [s.value for s in Setup] == ["intermediate", "none", "stack", "fuse", "average", "multitask",
                                        "sequential", "stack-size", "full", "full-after-intermediate"]
    assert (BLOCK_MEMBERS[Block.STACK], BLOCK_MEMBERS[Block.FUSE]) == (Members.EACH, Members.ALL)
    assert str(Setup.STACK) == f"{Setup.STACK}" == "stack"


def test_the_grid_takes_the_fuse_rule_from_composition():
    assert refusal(Block.FUSE, ("bottleneck", "bottleneck"), "lora") is None
    assert refusal(Block.STACK, ("lora",), "lora") is None
    assert refusal(Block.FUSE, ("lora", "lora"), "lora") is None  # Fuse over LoRA members
    assert refusal(Block.FUSE, ("bottleneck", "lora"), "lora") == (
        "Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); LoRA member(s): m2. "
        "Use Stack for LoRA adapters")
    grid = GridSpec(intermediate=("toy-sentiment", "toy-pair"), targets=(TargetSpec("toy-tags"),))
    assert _no_cell(grid, "lora", Setup.FUSE) is None
    assert _no_cell(grid, "full", Setup.FUSE) == "Fuse composes bottleneck, lora and houlsby adapters only"
    assert _no_cell(grid, "bottleneck", Setup.FUSE) is None
    one = GridSpec(intermediate=("toy-sentiment",), targets=(TargetSpec("toy-tags"),))
    assert _no_cell(one, "bottleneck", Setup.FUSE) == (
        "fuse needs at least two intermediate tasks (intermediate: toy-sentiment)")
    none = GridSpec(intermediate=(), targets=(TargetSpec("toy-tags"),))
    assert _no_cell(none, "lora", Setup.STACK) == "stack needs an intermediate task (intermediate is empty)"


def test_a_grid_refuses_setups_that_are_not_grid_setups():
    with pytest.raises(ValueError, match=r"^setups are what a target cell composes \(valid: none, stack, fuse, average, "
                                         r"multitask; got full\); the full fine-tune baseline is `full_finetune`$"):
        GridSpec(intermediate=("toy-sentiment",), targets=(TargetSpec("toy-tags"),), setups=(Setup.FULL,))


def stack(inter, seed, dev, status="ok"):
    return {"id": f"{inter}/{seed}", "status": status, "intermediate": inter, "seed": seed, "dev": dev}


def test_the_best_stack_rule():
    assert best_intermediate([stack("a", 0, 70.0), stack("b", 0, 71.0), stack("a", 1, 99.0)]) == "b"  # first seed
    assert best_intermediate([stack("a", 1, 70.0), stack("b", 2, 99.0)]) == "a"  # the first seed that has a dev
    assert best_intermediate([stack("a", 0, 70.0), stack("c", 0, 70.0), stack("b", 0, 70.0)]) == "c"  # ties: last
    assert best_intermediate([stack("a", 0, None)]) is None
    assert best_intermediate([stack("a", 0, None)], fallback=lambda: "a") == "a"
    records = [CellRecord.of(**stack("a", 0, 70.0)), CellRecord.of(**stack("b", 0, 72.0))]
    assert best_intermediate(records) == "b"  # records and dicts alike


def test_the_runner_and_the_report_pick_the_same_stack(tmp_path):
    """The report's best stack is the one the runner gave every seed: the grid's gate and the report's column."""
    from stepstone.experiments import build_report
    from stepstone.experiments.run import _best_stack

    grid = GridSpec(intermediate=("toy-sentiment", "toy-pair"), targets=(TargetSpec("toy-tags"),), seeds=(0, 1),
                    methods=("bottleneck",), setups=(Setup.NONE, Setup.STACK), full_finetune=False)
    planned = {c.id: c for c in cells(grid)}
    dev = {"toy-sentiment": 60.0, "toy-pair": 75.0}
    done = {}
    for cell in planned.values():
        if cell.kind is Kind.TARGET and cell.after is None:
            inter = cell.record.intermediate
            done[cell.id] = cell.record.updated(status="ok", error=None, dev=dev.get(inter, 50.0), metric="f1",
                                                scores={"en": 90.0, "de": 10.0 + dev.get(inter, 50.0)})
    gated = [c for c in planned.values() if c.after]
    assert {_best_stack(done, c) for c in gated} == {"toy-pair"}
    (tmp_path / "cells.jsonl").write_text("".join(r.to_json() + "\n" for r in done.values()))
    headline = build_report(tmp_path, plots=False).tables["headline"]
    assert [(r["column"], r["intermediate"]) for r in headline] == [("none [bottleneck]", None),
                                                                     ("best stack [bottleneck]", "toy-pair")]


def test_the_committed_grid_reports_the_same_headline(tmp_path):
    """Records without an 'intermediate' key (full fine-tune cells) go through the best-stack rule too. The committed
    report.md predates later report sections, so its headline section is what must match."""
    import shutil

    from stepstone.experiments import build_report

    committed = ROOT / "docs" / "results" / "cpu-small"
    shutil.copy(committed / "cells.jsonl", tmp_path / "cells.jsonl")
    report = build_report(tmp_path, plots=False)

    def headline(markdown: str) -> str:
        return markdown.split("## Headline: zero-shot score")[1].split("\n## ")[0]

    assert headline(report.markdown) == headline((committed / "report.md").read_text(encoding="utf-8"))
    assert "best stack [bottleneck]" in headline(report.markdown)


def test_average_is_a_grid_setup_asked_for_by_name():
    """A new block is a grid setup by one BLOCK_MEMBERS line: Average over every intermediate, when listed."""
    from stepstone.specs import Composition

    grid = GridSpec(intermediate=("toy-sentiment", "toy-pair"), targets=(TargetSpec("toy-tags"),), seeds=(0,),
                    setups=(Setup.NONE, Setup.AVERAGE), full_finetune=False)
    targets = {c.id: c.spec.compose for c in cells(grid) if c.id.startswith("target/")}
    assert targets == {f"target/toy-tags/{m}/{s}/seed0": compose for m in ("bottleneck", "lora")
                       for s, compose in (("none", None), ("average", Composition(
                           Block.AVERAGE, (f"{m}-toy-sentiment", f"{m}-toy-pair"))))}
    default = GridSpec(intermediate=("toy-sentiment", "toy-pair"), targets=(TargetSpec("toy-tags"),), seeds=(0,))
    assert not any("/average/" in c.id for c in cells(default))
