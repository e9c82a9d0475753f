"""Where a grid's cells run: side by side on local workers, or as jobs on a SLURM cluster through submitit.

`stepstone grid SPEC` runs one cell at a time (run.py). With `--workers N` (or `executor: {workers: N}` in the
spec) N cells run at once, each in its own forked process; on a GPU machine worker i sees one device
(CUDA_VISIBLE_DEVICES, round robin over the visible ones). With `--executor slurm` every cell is a SLURM job
submitted through submitit, with the spec's or the command line's partition, time, GPUs per cell etc.

One scheduler for both (`run_parallel`): a cell starts once every cell it depends on has finished (the
intermediate adapters it composes or continues, the rank cell and first-seed cells that pick its best stack: see
`dependencies`), so an intermediate adapter is trained once, before the cells that compose it, and never by two
workers at the same time (each run also holds its own lock: locks.py). The driver alone writes cells.jsonl (one
line per finished cell, in the order they finish), so the records and the resume rules are the serial run's.
A cell whose process died (killed, out of memory, a node lost, a job preempted or past its time) is run again up to
`retries` times; its training continues from its last checkpoint, and a killed save leaves nothing half-written
(artifacts are written to a temporary folder and renamed). A cell that raised an error is recorded as failed at
once, as in a serial run: running it again would fail the same way.

Why submitit: it is what research clusters run SLURM jobs from Python with (Meta's; Hydra's SLURM launcher is built
on it), a small pure-Python package (cloudpickle and typing-extensions), and it has a local mode that runs the same
job path on this machine (`--executor submitit-local`: the tests, or a dry run before a cluster). Ray would be a
cluster of its own to run; Dask-jobqueue needs a scheduler process beside the jobs. submitit sends a job's function
and arguments (the grid, the cell) through cloudpickle files in its job folder: transport, not an artifact; results
come back the same way and the driver writes them as JSON.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import interrupts
from ..config import build, load_yaml, merge, parse_overrides
from ..errors import ConfigError, StepstoneError, choices, did_you_mean
from ..progress import ProgressFactory, silent
from .cells import Kind

INTERRUPTED = "interrupted"  # what a cell sends instead of its record when a signal stopped it
DIED = "died"  # what an executor reports for a cell whose process ended without a record


class Engine(str, Enum):
    """Where the cells run."""

    LOCAL = "local"  # forked processes on this machine (one cell at a time without --workers)
    SLURM = "slurm"  # one SLURM job per cell, through submitit
    SUBMITIT_LOCAL = "submitit-local"  # submitit's local mode: the SLURM path's jobs as processes on this machine


@dataclass(frozen=True)
class SlurmSpec:
    """A cell's SLURM job (submitit's parameters). time_min: each job's time limit in minutes (a cell past it is
    killed, then retried from its checkpoint); setup: shell lines run before each job (e.g. `source venv/bin/activate`,
    `module load cuda`); sbatch: further #SBATCH options, e.g. {exclude: node12}; logs: submitit's job folder (its
    logs and transport files; default GRID_DIR/slurm)."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_cell: int = 1
    cpus_per_cell: int = 8
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()
    sbatch: dict[str, str] = field(default_factory=dict)
    logs: Path | None = None

    def __post_init__(self):
        for name in ("time_min", "cpus_per_cell"):
            if getattr(self, name) < 1:
                raise ValueError(f"slurm.{name} must be at least 1 (got {getattr(self, name)})")
        if self.gpus_per_cell < 0:
            raise ValueError(f"slurm.gpus_per_cell must be 0 or more (got {self.gpus_per_cell})")
        if self.mem_gb is not None and self.mem_gb < 1:
            raise ValueError(f"slurm.mem_gb must be at least 1 (got {self.mem_gb})")


@dataclass(frozen=True)
class ExecutorSpec:
    """How a grid's cells run (the spec's `executor:` section; the command line's options win). Not part of the
    grid: the pinned grid.yaml and the records are the same whichever runs them.

    workers: cells at once (local: forked processes; slurm: jobs in flight; None: 1 locally, every ready cell on
        SLURM). threads: torch CPU threads per local worker (None: $STEPSTONE_THREADS, else the cores / workers).
    retries: times a cell whose process died is run again before it is recorded as failed."""

    engine: Engine = Engine.LOCAL
    workers: int | None = None
    threads: int | None = None
    retries: int = 1
    slurm: SlurmSpec = field(default_factory=SlurmSpec)

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1 (got {self.workers})")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1 (got {self.threads})")
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more (got {self.retries})")

    @property
    def parallel(self) -> bool:
        """Whether the scheduler below runs the grid (else run.py's one-cell-at-a-time loop)."""
        return self.engine is not Engine.LOCAL or (self.workers or 1) > 1


_LEAST = {"workers": 1, "retries": 0, "time_min": 1, "gpus_per_cell": 0, "cpus_per_cell": 1, "mem_gb": 1}
SECTION = "executor"  # the grid spec's key for these settings (load_grid leaves it out of the grid)


def load_executor(path: Path, overrides: tuple[str, ...] = (), options: dict | None = None) -> ExecutorSpec:
    """The executor settings of a grid spec file (its `executor:` section, then `executor.KEY=VALUE` overrides,
    then the command line's `options`, None values left out); problems name file:line."""
    data, lines = load_yaml(path)
    section = merge(data, parse_overrides(overrides)).get(SECTION) or {}
    if not isinstance(section, dict):
        where = f"{path}:{lines[(SECTION,)]}" if (SECTION,) in lines else str(path)
        raise ConfigError([f"{where}: '{SECTION}' must be a mapping of settings, e.g. {{workers: 2}}"])
    given = {k: v for k, v in (options or {}).items() if v is not None}
    if "engine" in given and given["engine"] not in [e.value for e in Engine]:
        raise ConfigError([f"--executor '{given['engine']}' is not one of: {choices(e.value for e in Engine)}"
                           + did_you_mean(given["engine"], [e.value for e in Engine])])
    for key, least in _LEAST.items():  # the command line's own numbers, named as it names them
        if key in given and given[key] < least:
            raise ConfigError([f"--{key.replace('_', '-')} must be at least {least} (got {given[key]})"])
    slurm = {k: given.pop(k) for k in list(given) if k in SlurmSpec.__dataclass_fields__}
    section = merge(section, {**given, **({"slurm": slurm} if slurm else {})})
    return build(ExecutorSpec, section, source=str(path), lines=lines, prefix=(SECTION,))


# ---- what a cell waits for ---------------------------------------------------------------------------------

def dependencies(every_cell: list) -> dict[str, set[str]]:
    """Cell id -> the ids of the cells that must finish before it starts: the cells that train what it composes,
    continues (init_from), evaluates or ranks; for a best-stack seed cell (`after`), every first-seed cell of its
    target, method and setup and its rank cell, whose records pick the stack it runs."""
    made = {cell.spec.name: cell.id for cell in every_cell if cell.kind is Kind.INTERMEDIATE and cell.spec}
    ids = {cell.id for cell in every_cell}
    out: dict[str, set[str]] = {}
    for cell in every_cell:
        spec, uses = cell.spec, set()
        if spec is not None:
            uses |= set(spec.compose.members if spec.compose else ())
            if spec.init_from is not None and not spec.init_from.is_absolute():
                uses.add(str(spec.init_from))
        uses |= {cell.evaluate_artifact} if cell.evaluate_artifact else set()
        uses |= set(cell.rank.candidates if cell.rank else ())
        needs = {made[name] for name in uses if name in made}
        if cell.after is not None:
            mine = cell.record
            needs |= {c.id for c in every_cell if c.after is None and c.kind is Kind.TARGET and c.prefix == cell.prefix
                      and (c.record.target, c.record.method, c.record.composition)
                      == (mine.target, mine.method, mine.composition)}
            from .grid import rank_cell_id

            rank = cell.prefix + rank_cell_id(mine.target, mine.method)
            needs |= {rank} if rank in ids else set()
        out[cell.id] = needs - {cell.id}
    return out


# ---- executors: start a cell, tell when it finished ------------------------------------------------------

@dataclass
class Outcome:
    """A finished cell: its record's values, or DIED (with why), or INTERRUPTED (with the signal's detail)."""

    values: dict | None = None
    died: str | None = None
    interrupted: tuple[int, str | None] | None = None


def cell_job(grid, folder: Path, cell, progress: ProgressFactory = silent) -> dict:
    """One cell, as a worker or a SLURM job runs it: its record's values, or {INTERRUPTED: [signal, detail]} when
    a signal stopped it (its checkpoint saved)."""
    from .run import _run_cell

    try:
        with _timeout_as_sigterm(), interrupts.stopping():
            return _run_cell(grid, folder, cell, progress)
    except interrupts.Interrupted as stop:
        return {INTERRUPTED: [stop.signum, stop.detail]}


@contextmanager
def _timeout_as_sigterm() -> Iterator[None]:
    """SLURM warns a job near its time limit with SIGUSR2 (submitit asks for it 90 s ahead), where submitit's own
    handler would raise an error into the training: make it a SIGTERM instead, which stops the training at its next
    step with a checkpoint; the driver then runs the cell again, from there."""
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR2, previous)


def _outcome(values: Any, why: str) -> Outcome:
    if isinstance(values, dict) and INTERRUPTED in values:
        return Outcome(interrupted=tuple(values[INTERRUPTED]))
    if not isinstance(values, dict):
        return Outcome(died=why)
    return Outcome(values=values)


class ForkedWorkers:
    """`slots` forked processes on this machine, each running one cell; on a GPU machine slot i sees device
    `devices[i % len(devices)]` alone; each sets torch's CPU threads to `threads`."""

    def __init__(self, slots: int, threads: int | None, devices: list[str], job: Callable = cell_job):
        self.slots, self.threads, self.devices, self.job = slots, threads, devices, job
        self.running: dict[Any, Any] = {}  # receive end -> process

    def start(self, grid, folder: Path, cell, slot: int) -> Any:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        device = self.devices[slot % len(self.devices)] if self.devices else None

        def child() -> None:
            if device is not None:  # before anything touches CUDA in this process
                os.environ["CUDA_VISIBLE_DEVICES"] = device
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            send.send(self.job(grid, folder, cell))

        process = context.Process(target=child)
        process.start()
        send.close()
        self.running[receive] = process
        return receive

    def wait(self, handles: list, timeout: float) -> list[tuple[Any, Outcome]]:
        from multiprocessing.connection import wait

        out = []
        for receive in wait(handles, timeout):
            process = self.running.pop(receive)
            try:
                values = receive.recv()
            except EOFError:  # the process died before sending its record
                values = None
            process.join()
            receive.close()
            out.append((receive, _outcome(values, f"cell process died (exit code {process.exitcode})")))
        return out

    def stop(self, signum: int) -> None:
        """A signal to the driver alone (SIGTERM from a scheduler) stops the cells too."""
        for process in list(self.running.values()):
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)


class SubmititJobs:
    """One submitit job per cell: on SLURM (`cluster='slurm'`) or as local processes (`cluster='local'`)."""

    POLL_SECONDS = {"slurm": 15.0, "local": 0.5}

    def __init__(self, folder: Path, cluster: str, slurm: SlurmSpec, slots: int | None, job: Callable = cell_job):
        import submitit

        self.cluster, self.slots, self.job = cluster, slots, job
        self.executor = submitit.AutoExecutor(folder=str(slurm.logs or folder / "slurm" / "%j"), cluster=cluster)
        parameters: dict[str, Any] = dict(timeout_min=slurm.time_min, gpus_per_node=slurm.gpus_per_cell,
                                          cpus_per_task=slurm.cpus_per_cell, tasks_per_node=1, nodes=1)
        if slurm.mem_gb is not None:
            parameters["mem_gb"] = slurm.mem_gb
        if cluster == "slurm":
            parameters.update({f"slurm_{k}": v for k, v in (("partition", slurm.partition),
                                                             ("account", slurm.account), ("qos", slurm.qos),
                                                             ("constraint", slurm.constraint)) if v is not None})
            if slurm.setup:
                parameters["slurm_setup"] = list(slurm.setup)
            if slurm.sbatch:
                parameters["slurm_additional_parameters"] = dict(slurm.sbatch)
        elif slurm.setup:
            parameters["local_setup"] = list(slurm.setup)
        self.executor.update_parameters(**parameters)
        self.running: dict[Any, Any] = {}

    def start(self, grid, folder: Path, cell, slot: int) -> Any:
        self.executor.update_parameters(name=f"stepstone:{cell.id}"[:120])
        job = self.executor.submit(self.job, grid, folder, cell)
        self.running[job.job_id] = job
        return job.job_id

    def wait(self, handles: list, timeout: float) -> list[tuple[Any, Outcome]]:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        deadline = time.monotonic() + timeout
        while True:
            finished = [h for h in handles if self.running[h].done()]
            if finished or time.monotonic() >= deadline:
                break
            time.sleep(min(self.POLL_SECONDS[self.cluster], max(deadline - time.monotonic(), 0.0)))
        out = []
        for handle in finished:
            job = self.running.pop(handle)
            try:
                values, why = job.result(), ""  # a record, or INTERRUPTED
            except (UncompletedJobError, FailedJobError) as err:  # killed, preempted, past its time, lost
                lines = [line for line in str(err).strip().splitlines() if line.strip()]
                why = f"job {job.job_id} ended without a record ({lines[0][:200] if lines else job.state})"
                values = None
            out.append((handle, _outcome(values, why)))
        return out

    def stop(self, signum: int) -> None:
        """Cancel the jobs in flight: SLURM sends them SIGTERM (their checkpoints are saved), then kills them."""
        for job in list(self.running.values()):
            job.cancel(check=False)


def executor_for(spec: ExecutorSpec, folder: Path) -> ForkedWorkers | SubmititJobs:
    if spec.engine is Engine.LOCAL:
        workers = spec.workers or 1
        threads = spec.threads or (None if os.environ.get("STEPSTONE_THREADS") else
                                   max(1, (os.cpu_count() or 1) // workers))
        return ForkedWorkers(workers, threads, _devices())
    return SubmititJobs(folder, "slurm" if spec.engine is Engine.SLURM else "local", spec.slurm, spec.workers)


def _devices() -> list[str]:
    """The CUDA devices this process sees (their CUDA_VISIBLE_DEVICES names), without initialising CUDA here: a
    forked child could not use it then."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


# ---- the scheduler ---------------------------------------------------------------------------------------

@dataclass
class Scheduled:
    """What the scheduler hands back to the grid runner for each event."""

    start: Callable[[Any], None]  # a cell starts
    finish: Callable[[Any, dict, float], None]  # a cell finished with these values after so many seconds
    # whether a cell runs, asked once what it depends on has finished: a best-stack seed cell, or a lost adapter in
    # `waits`, may be passed over
    gate: Callable[[Any], bool]
    echo: Callable[[str], None]
    waits: dict[str, set[str]] = field(default_factory=dict)  # cell id -> the cells it also waits for


def run_parallel(grid, folder: Path, todo: list, every_cell: list, executor, hooks: Scheduled,
                 retries: int, limit: int | None, clock: Callable[[], float]) -> int:
    """Run the cells of `todo` (the not-yet-ok ones of `every_cell`) on `executor`, each once what it depends on has
    finished, results before intermediate adapters (`_trains_an_intermediate`); returns how many ran. A signal stops starting cells, passes the signal to the running
    ones (they stop at their next step with a checkpoint) and, once they have, raises `Interrupted` naming them."""
    needs = dependencies(every_cell)
    for cell_id, also in hooks.waits.items():
        needs[cell_id] = needs[cell_id] | also
    pending, running, tries, ran = list(todo), {}, {}, 0
    slots = executor.slots
    free = list(range(slots)) if slots else []
    stopped: list[tuple[str, str | None]] = []
    with interrupts.deferred(then=executor.stop):
        while pending or running:
            open_ids = {c.id for c in pending} | {c.id for c, _, _ in running.values()}
            for cell in sorted(pending, key=_trains_an_intermediate):
                if interrupts.received() is not None or (limit is not None and ran + len(running) >= limit):
                    break
                if slots and not free:
                    break
                if needs[cell.id] & open_ids:
                    continue
                pending.remove(cell)
                if not hooks.gate(cell):
                    continue
                slot = free.pop(0) if slots else 0
                hooks.start(cell)
                running[executor.start(grid, folder, cell, slot)] = (cell, slot, clock())
            if not running:
                break  # a signal, the limit, or (never, with the cells' order) nothing left that can start
            for handle, outcome in executor.wait(list(running), timeout=1.0):
                cell, slot, began = running.pop(handle)
                if slots:
                    free.append(slot)
                    free.sort()
                if outcome.interrupted is not None and interrupts.received() is not None:
                    stopped.append((cell.id, outcome.interrupted[1]))
                    continue
                if outcome.interrupted is not None:  # a signal to the cell alone: SLURM's time limit, preemption
                    signum, detail = outcome.interrupted
                    outcome = Outcome(died=f"stopped by {signal.Signals(signum).name}" + (f" {detail}" if detail
                                                                                          else ""))
                if outcome.died is not None:
                    tries[cell.id] = tries.get(cell.id, 0) + 1
                    if tries[cell.id] <= retries and interrupts.received() is None:
                        hooks.echo(f"  {cell.id}: {outcome.died}; running it again "
                                   f"({tries[cell.id]} of {retries} retries)")
                        pending.insert(0, cell)
                        continue
                    values = {"status": "error", "error": outcome.died + (f" (tried {tries[cell.id]} times)"
                                                                          if tries[cell.id] > 1 else "")}
                else:
                    values = outcome.values
                hooks.finish(cell, values, clock() - began)
                ran += 1
    signum = interrupts.received()
    if signum is not None:
        if len(stopped) == 1:
            cell_id, detail = stopped[0]
            where = f"in cell {cell_id}" + (f" {detail}" if detail else "")
        elif stopped:
            where = "in cells " + ", ".join(cell_id for cell_id, _ in stopped)
        else:
            where = "after the running cells finished"
        raise interrupts.Interrupted(signum, where, resumable=True)
    return ran


def _trains_an_intermediate(cell) -> bool:
    """The order a free worker takes the cells that can start: results first (target, retrieval and rank cells
    whose inputs are ready), then intermediate adapters, each group in grid order. The total work is the same, but
    scores arrive from the first minutes on, and a grid interrupted and continued on another machine (weights are
    never committed) has fewer intermediate adapters whose dependents are still to run (run.py trains those again)."""
    return cell.kind is Kind.INTERMEDIATE


def check_parallel(spec: ExecutorSpec, isolate: bool) -> None:
    """What refuses an executor before anything is written."""
    import shutil

    if spec.engine is Engine.SLURM and shutil.which("srun") is None:
        raise StepstoneError("--executor slurm submits SLURM jobs, but this machine has no SLURM (srun is not on "
                             "PATH): run the grid on the cluster's login node, or try it here with --executor "
                             "submitit-local")
    if spec.parallel and not isolate:
        raise StepstoneError("--no-isolate runs each cell in this process, one at a time; "
                             f"{'--workers' if spec.engine is Engine.LOCAL else '--executor ' + spec.engine.value} "
                             "runs cells in processes of their own: drop --no-isolate")
