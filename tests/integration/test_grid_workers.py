"""A grid on several workers (issue 17): local forked workers and submitit's local mode give the serial run's
records, start a cell only after what it composes, train each intermediate adapter once, and run a cell whose
process was killed again (nothing half-written left in the zoo)."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from stepstone.experiments import CELLS, Engine, ExecutorSpec, GridSpec, Preset, Setup, TargetSpec, cells, run_grid
from stepstone.experiments import execution, run as run_module
from stepstone.experiments.execution import dependencies
from stepstone.manifest import read_manifest

TIMING = ("cell_seconds", "train_seconds", "peak_rss_mb")  # what differs run to run


def grid(**changes) -> GridSpec:
    spec = dict(intermediate=("toy-sentiment", "toy-pair"), preset=Preset.TINY, seeds=(0, 1), methods=("bottleneck",),
                setups=(Setup.NONE, Setup.STACK, Setup.FUSE), targets=(TargetSpec("toy-tags"),), full_finetune=False)
    spec.update(changes)
    return GridSpec(**spec)


def records(folder: Path) -> dict[str, dict]:
    """cells.jsonl as id -> record, the timing fields left out; every line a different cell."""
    lines = [json.loads(line) for line in (folder / CELLS).read_text().splitlines()]
    assert len({r["id"] for r in lines}) == len(lines)
    return {r["id"]: {k: v for k, v in r.items() if k not in TIMING} for r in lines}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("serial") / "g"
    result = run_grid(grid(), folder)
    assert result.failed == []
    return records(folder)


@pytest.fixture
def timeline(tmp_path, monkeypatch) -> Path:
    """Every cell's start and end (time, pid) appended to a file by the process that runs it."""
    log, real = tmp_path / "timeline.jsonl", run_module._run_cell

    def logged(grid, folder, cell, progress):
        _append(log, {"id": cell.id, "at": "start", "t": time.time(), "pid": os.getpid()})
        try:
            return real(grid, folder, cell, progress)
        finally:
            _append(log, {"id": cell.id, "at": "end", "t": time.time(), "pid": os.getpid()})

    monkeypatch.setattr(run_module, "_run_cell", logged)
    return log


def _append(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def test_two_local_workers_record_what_a_serial_run_records(serial, timeline, tmp_path):
    folder = tmp_path / "g"
    echoed: list[str] = []
    result = run_grid(grid(), folder, executor=ExecutorSpec(workers=2), echo=echoed.append)
    assert result.failed == [] and result.ran == len(serial)
    assert records(folder) == serial  # order aside, the same lines
    events = [json.loads(line) for line in timeline.read_text().splitlines()]
    spans = {e["id"]: {} for e in events}
    for e in events:
        spans[e["id"]][e["at"]] = e["t"]
    # what a cell composes finished before it started; each cell ran once, each in its own process
    needs = dependencies(cells(grid()))
    for cell_id, span in spans.items():
        assert all(spans[d]["end"] <= span["start"] for d in needs[cell_id]), cell_id
    assert sorted(e["id"] for e in events if e["at"] == "start") == sorted(serial)
    assert len({e["pid"] for e in events}) == len(serial)
    # results first: the two target-only cells (nothing to wait for) start before the intermediate adapters
    first = sorted((e["t"], e["id"]) for e in events if e["at"] == "start")[:2]
    assert sorted(i for _, i in first) == ["target/toy-tags/bottleneck/none/seed0", "target/toy-tags/bottleneck/none/seed1"]
    # two cells at once
    starts = sorted((e["t"], 1) for e in events if e["at"] == "start") + \
        sorted((e["t"], -1) for e in events if e["at"] == "end")
    running = peak = 0
    for _, step in sorted(starts, key=lambda s: (s[0], s[1])):
        running += step
        peak = max(peak, running)
    assert peak == 2


def test_dependencies_of_a_grid():
    needs = dependencies(cells(grid()))
    assert needs["intermediate/bottleneck/toy-sentiment"] == set()
    assert needs["target/toy-tags/bottleneck/none/seed0"] == set()
    assert needs["target/toy-tags/bottleneck/stack-toy-pair/seed0"] == {"intermediate/bottleneck/toy-pair"}
    assert needs["target/toy-tags/bottleneck/fuse/seed1"] == {"intermediate/bottleneck/toy-sentiment",
                                                              "intermediate/bottleneck/toy-pair"}
    # the seed-1 Stack cells wait for every seed-0 Stack cell: their records pick the best stack
    assert needs["target/toy-tags/bottleneck/stack-toy-pair/seed1"] == {
        "intermediate/bottleneck/toy-pair", "target/toy-tags/bottleneck/stack-toy-pair/seed0",
        "target/toy-tags/bottleneck/stack-toy-sentiment/seed0"}


def test_a_killed_worker_is_run_again_and_leaves_nothing_half_written(serial, tmp_path, monkeypatch):
    """The process training an intermediate adapter is SIGKILLed halfway through writing its weights; the cell
    runs again (the dead save's temporary folder swept away), and the grid ends as the serial one did."""
    import stepstone.methods as methods

    marker, save = tmp_path / "killed", methods.save_adapter

    def half_then_die(model, directory, name, with_head):
        save(model, directory, name, with_head)
        if name == "bottleneck-toy-pair" and not marker.exists():
            marker.write_text(str(os.getpid()))
            weights = directory / "adapter.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
            os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(methods, "save_adapter", half_then_die)
    folder, echoed = tmp_path / "g", []
    result = run_grid(grid(), folder, executor=ExecutorSpec(workers=2), echo=echoed.append)
    assert marker.exists() and result.failed == []
    assert [line for line in echoed if "running it again" in line] == [
        "  intermediate/bottleneck/toy-pair: cell process died (exit code -9); running it again (1 of 1 retries)"]
    assert records(folder) == serial
    zoo = sorted(p.name for p in (folder / "zoo").iterdir())
    assert not [name for name in zoo if name.startswith(".")]  # no temporary folder, no lock left behind
    assert {r["artifact"] for r in serial.values() if r["kind"] == "intermediate"} <= set(zoo)
    for name in zoo:  # every entry whole: its weights match the manifest's checksums
        read_manifest(folder / "zoo" / name, verify=True)


def test_a_cell_that_keeps_dying_is_recorded_as_failed_and_the_grid_goes_on(tmp_path, monkeypatch):
    real = run_module._run_cell

    def die_on_pair(grid, folder, cell, progress):
        if cell.id == "intermediate/bottleneck/toy-pair":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(grid, folder, cell, progress)

    monkeypatch.setattr(run_module, "_run_cell", die_on_pair)
    small = grid(seeds=(0,), setups=(Setup.NONE, Setup.STACK))
    for executor in (ExecutorSpec(workers=2, retries=2), ExecutorSpec(retries=2)):  # side by side, and serial
        folder, echoed = tmp_path / f"g{executor.workers}", []
        result = run_grid(small, folder, executor=executor, echo=echoed.append)
        failed = json.loads([line for line in (folder / CELLS).read_text().splitlines() if "toy-pair" in line
                             and '"intermediate"' in line][0])
        assert failed["error"] == "cell process died (exit code -9) (tried 3 times)"
        assert sum("running it again" in line for line in echoed) == 2
        # the Stack cell over the dead adapter ran and failed; every other cell is fine
        assert result.failed == ["intermediate/bottleneck/toy-pair", "target/toy-tags/bottleneck/stack-toy-pair/seed0"]


def test_an_interrupted_parallel_grid_continues(serial, tmp_path):
    folder = tmp_path / "g"
    first = run_grid(grid(), folder, executor=ExecutorSpec(workers=2), limit=3)
    assert first.ran == 3
    rest = run_grid(grid(), folder, executor=ExecutorSpec(workers=2))
    assert rest.skipped == 3 and rest.ran == len(serial) - 3
    assert records(folder) == serial


def test_submitit_local_mode_runs_the_cells_as_jobs(tmp_path, monkeypatch):
    """The SLURM path through submitit's local mode (each cell a job: a fresh Python process): the serial
    run's records; a job killed mid-cell (SIGKILL, as a node lost or a job past its time) is submitted again."""
    small = grid(intermediate=("toy-sentiment",), seeds=(0,), setups=(Setup.NONE, Setup.STACK))
    reference = tmp_path / "serial"
    run_grid(small, reference)
    marker = tmp_path / "killed"

    def killed_once(grid, folder, cell, progress=None):  # pickled by value into each job
        import os as _os
        import signal as _signal

        from stepstone.experiments.execution import cell_job

        if cell.id.startswith("intermediate/") and not marker.exists():
            marker.write_text("x")
            _os.kill(_os.getpid(), _signal.SIGKILL)
        return cell_job(grid, folder, cell)

    made = execution.executor_for

    def with_killer(spec, folder):
        jobs = made(spec, folder)
        jobs.job = killed_once
        return jobs

    monkeypatch.setattr(execution, "executor_for", with_killer)
    folder, echoed = tmp_path / "g", []
    result = run_grid(small, folder, executor=ExecutorSpec(engine=Engine.SUBMITIT_LOCAL, workers=2),
                      echo=echoed.append)
    assert marker.exists() and result.failed == []
    assert sum("ended without a record" in line and "running it again" in line for line in echoed) == 1
    assert records(folder) == records(reference)
    assert (folder / "slurm").is_dir()  # submitit's job folders: logs and transport files


def test_slurm_parameters_reach_submitit(tmp_path, monkeypatch):
    """What `--executor slurm` submits with (submitit's SLURM executor builds the sbatch file; nothing is run: a
    stand-in `srun` on PATH is all submitit looks for)."""
    bin = tmp_path / "bin"
    bin.mkdir()
    (bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin}{os.pathsep}{os.environ['PATH']}")
    spec = execution.SlurmSpec(partition="gpu", time_min=90, gpus_per_cell=2, cpus_per_cell=4, mem_gb=64,
                               account="lab", qos="high", constraint="a100", setup=("source venv/bin/activate",),
                               sbatch={"exclude": "node3"})
    jobs = execution.SubmititJobs(tmp_path, "slurm", spec, slots=None)
    parameters = jobs.executor._executor.parameters
    assert parameters == {"partition": "gpu", "time": 90, "gpus_per_node": 2, "cpus_per_task": 4, "mem": "64GB",
                          "account": "lab", "qos": "high", "constraint": "a100", "ntasks_per_node": 1, "nodes": 1,
                          "setup": ["source venv/bin/activate"], "additional_parameters": {"exclude": "node3"}}
    text = jobs.executor._executor._make_submission_file_text("python -m x", "uid")
    assert "#SBATCH --partition=gpu" in text and "#SBATCH --gpus-per-node=2" in text
    assert "#SBATCH --time=90" in text and "#SBATCH --exclude=node3" in text and "source venv/bin/activate" in text
    assert "#SBATCH --signal=USR2@90" in text  # the time-limit warning cell_job turns into a checkpointed stop


def test_executor_settings_from_the_spec_and_the_command_line(tmp_path):
    from stepstone.errors import ConfigError
    from stepstone.experiments import load_executor, load_grid

    spec = tmp_path / "grid.yaml"
    spec.write_text("intermediate: [toy-sentiment]\npreset: tiny\ntargets: [{task: toy-tags}]\nseeds: [0]\n"
                    "executor:\n  workers: 3\n  slurm:\n    partition: gpu\n    time_min: 30\n")
    loaded = load_executor(spec)
    assert (loaded.workers, loaded.slurm.partition, loaded.slurm.time_min, loaded.engine) == (3, "gpu", 30,
                                                                                              Engine.LOCAL)
    given = load_executor(spec, ("executor.retries=2",), {"workers": 1, "engine": "slurm", "time_min": 60,
                                                          "partition": None})
    assert (given.workers, given.retries, given.engine, given.slurm.partition, given.slurm.time_min) == (
        1, 2, Engine.SLURM, "gpu", 60)
    with pytest.raises(ConfigError, match=r"--executor 'ray' is not one of: local, slurm, submitit-local"):
        load_executor(spec, (), {"engine": "ray"})
    plain = tmp_path / "plain.yaml"  # the grid is the same without its executor section
    plain.write_text(spec.read_text().split("executor:")[0])
    assert load_grid(plain) == load_grid(spec)


def test_the_workers_benchmark_runs_and_compares_the_records(tmp_path):
    import subprocess
    import sys

    spec, out = tmp_path / "grid.yaml", tmp_path / "workers.json"
    spec.write_text("intermediate: [toy-sentiment]\npreset: tiny\ntargets: [{task: toy-tags}]\nseeds: [0]\n"
                    "methods: [bottleneck]\nsetups: [none, stack]\nfull_finetune: false\n")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(repo / "benchmarks" / "workers.py"), "--spec", str(spec),
                           "--backbone", "tiny", "--workers", "1,2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=repo)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["same_records"] is True and set(report["runs"]) == {"1", "2"}
    assert all(run["cells"] == 3 and run["failed"] == [] and run["cells_per_hour"] > 0
               for run in report["runs"].values())
    assert report["runs"]["1"]["speedup"] == 1.0


def test_each_local_worker_sees_its_own_gpu_and_threads():
    """On a GPU machine, slot i's cells see device i alone (round robin past the last device); on any machine each
    worker sets its torch threads. Checked with a stand-in cell that reports what its process sees."""
    def report(grid, folder, cell):
        import torch

        return {"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "threads": torch.get_num_threads(), "cell": cell}

    workers = execution.ForkedWorkers(slots=3, threads=1, devices=["4", "7"], job=report)
    handles = [workers.start(None, Path("."), f"c{slot}", slot) for slot in range(3)]
    seen = {}
    while handles:  # as the scheduler does: wait on the cells still running
        for handle, outcome in workers.wait(handles, timeout=30.0):
            handles.remove(handle)
            seen[outcome.values["cell"]] = (outcome.values["device"], outcome.values["threads"])
    assert seen == {"c0": ("4", 1), "c1": ("7", 1), "c2": ("4", 1)}
