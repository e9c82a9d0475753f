"""The grid's progress: cell k of n, elapsed time and an estimate of the time left (on an injected clock),
through the progress reporter's notes, so `-q` silences them; failures still go to `echo`."""
from __future__ import annotations

from pathlib import Path

import pytest

from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, cells, load_records, planned, run_grid

SENTENCES = ["the cat sleeps", "a dog runs fast", "birds sing in spring", "we eat bread"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tatoeba = root / "target" / "tatoeba"
    tatoeba.mkdir(parents=True)
    for suffix in ("deu", "eng"):
        (tatoeba / f"tatoeba.deu-eng.{suffix}").write_text("\n".join(SENTENCES) + "\n")
    return root


class Ticks:
    """A clock that moves on a minute at every reading."""

    def __init__(self) -> None:
        self.now = -60.0

    def __call__(self) -> float:
        self.now += 60.0
        return self.now


def small(data: Path, **changes) -> GridSpec:
    spec = dict(intermediate=("toy-sentiment",), preset=Preset.TINY, data_dir=data, seeds=(0, 1),
                methods=("bottleneck",), setups=(Setup.STACK,), full_finetune=False,
                targets=(TargetSpec("toy-tags"), TargetSpec("tatoeba", split="test", langs=("de",))))
    spec.update(changes)
    return GridSpec(**spec)


def test_planned_counts_one_best_stack_cell_per_gate_and_seed(data):
    grid = small(data, intermediate=("toy-sentiment", "toy-pair"), seeds=(0, 1, 2))
    every = cells(grid)
    gated = [c for c in every if c.after]
    assert len(gated) == 4  # seeds 1 and 2 x two intermediates: one of each pair runs
    assert planned(grid, {}) == (len(every) - 4 + 2, 0)
    done = {every[0].id: {"status": "ok"}, gated[0].id: {"status": "ok"}, every[1].id: {"status": "error"}}
    assert planned(grid, done) == (len(every) - 4 + 2 - 2, 2)  # the failed cell reruns
    no_dev = small(data, intermediate=("toy-sentiment", "toy-pair"), seeds=(0, 1, 2),
                   targets=(TargetSpec("toy-tags", dev=False),))
    assert planned(no_dev, {}) == (len([c for c in cells(no_dev) if not c.after]), 0)  # nothing to pick by


def test_grid_notes_cell_k_of_n_elapsed_and_time_left(data, tmp_path, notes):
    folder = tmp_path / "grid"
    failures = []
    first = run_grid(small(data), folder, progress=notes, echo=failures.append, isolate=False, limit=2, clock=Ticks())
    assert first.ran == 2
    assert notes.lines == [
        f"grid {folder}: 2 cells to run, 0 already done",
        "cell 1/2 intermediate/bottleneck/toy-sentiment: 0:01:00 elapsed",
        "cell 2/2 target/toy-tags/bottleneck/stack-toy-sentiment/seed0: 0:03:00 elapsed, about 0:03:00 left",
        "grid: 2 cells ran in 0:05:00",
    ]
    notes.lines.clear()
    rest = run_grid(small(data), folder, progress=notes, echo=failures.append, isolate=False, clock=Ticks())
    assert (rest.ran, rest.skipped, rest.failed) == (3, 2, [])
    assert notes.lines == [
        f"grid {folder}: 3 cells to run, 2 already done",
        "cell 1/3 target/toy-tags/bottleneck/stack-toy-sentiment/seed1: 0:01:00 elapsed",
        "cell 2/3 retrieval/tatoeba/backbone: 0:03:00 elapsed, about 0:06:00 left",
        "cell 3/3 retrieval/tatoeba/bottleneck/toy-sentiment: 0:05:00 elapsed, about 0:02:30 left",
        "grid: 3 cells ran in 0:07:00",
    ]
    assert [line for line in failures if not line.startswith("  warning: ")] == []  # tiny data: may not learn
    assert {r["cell_seconds"] for r in load_records(folder / CELLS).values()} == {60.0}
    notes.lines.clear()
    again = run_grid(small(data), folder, progress=notes, isolate=False, clock=Ticks())
    assert again.ran == 0 and notes.lines == [f"grid {folder}: 0 cells to run, 5 already done"]


def test_a_failed_cell_is_echoed_with_its_id(data, tmp_path, notes):
    grid = small(data, seeds=(0,), setups=(Setup.NONE,), targets=(TargetSpec("pawsx"),))
    failures = []
    result = run_grid(grid, tmp_path / "g", progress=notes, echo=failures.append, isolate=False, clock=Ticks())
    assert result.failed == ["target/pawsx/bottleneck/none/seed0"]
    assert len(failures) == 1
    assert failures[0].startswith("  failed: target/pawsx/bottleneck/none/seed0: StepstoneError: no train file")
    assert notes.lines == [f"grid {tmp_path / 'g'}: 1 cells to run, 0 already done",
                           "cell 1/1 target/pawsx/bottleneck/none/seed0: 0:01:00 elapsed",
                           "grid: 1 cells ran in 0:03:00"]
