"""Running a grid: cells in order, each in its own process, one line per finished cell in GRID_DIR/cells.jsonl.

`run_grid` trains each intermediate adapter once (into the grid's zoo) and reuses it in every cell that composes
it, evaluates every target cell zero-shot, and appends one record per finished cell. Re-running continues: cells
recorded as ok are skipped, failed cells are retried, an artifact saved before an interruption is reused. A cell
that fails is recorded with its error and the grid goes on. `stepstone report GRID_DIR` reads cells.jsonl.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .. import health, interrupts
from ..artifacts import check_destination, write_text_atomic
from ..manifest import ArtifactLayout, Manifest, read_manifest
from ..config import dump_yaml
from ..errors import ConfigError, StepstoneError
from ..progress import Countdown, ProgressFactory, note, silent
from ..tasks import Split, TaskSpec, get_task
from . import stats
from .cells import CELLS, DEV, CellRecord, append_cell, best_intermediate, load_records, ranked_pick
from .execution import DIED, ExecutorSpec, ForkedWorkers, cell_job, check_parallel, dependencies
from .grid import DEFAULT_SETUPS, Cell, GridSpec, _backbone, cells, expansion_problems, rank_cell_id


@dataclass(frozen=True)
class GridResult:
    folder: Path
    ran: int
    skipped: int
    failed: list[str]


def run_grid(grid: GridSpec, folder: Path, *, progress: ProgressFactory = silent,
             echo: Callable[[str], None] = lambda line: None, isolate: bool = True,
             limit: int | None = None, clock: Callable[[], float] = time.monotonic,
             executor: ExecutorSpec | None = None) -> GridResult:
    """Run (or continue) `grid` in `folder`. isolate: each training / evaluation in its own forked process
    (a crash cannot take the grid down, and peak memory is per cell). limit: stop after that many cells
    (tests use it to simulate an interruption). executor: where the cells run (execution.py: one at a time here,
    by default; side by side on local workers; SLURM jobs); a cell whose process died is run again up to its
    `retries` times. Progress notes (`progress.note`): cell k of n, elapsed, an estimate of the time left;
    `echo`: failures and did-not-learn warnings. One grid at a time per folder: a second is refused at once.
    SIGINT / SIGTERM stop the cells in progress as they stop `train` (their checkpoints saved, nothing recorded for
    them) and raise `Interrupted` naming them; running the grid again continues it."""
    from ..locks import exclusive

    folder, executor = Path(folder), executor or ExecutorSpec()
    check_parallel(executor, isolate)
    problems = expansion_problems(grid, setups_given=grid.setups != DEFAULT_SETUPS)
    if problems:
        raise ConfigError([message for _, message in problems])
    every_cell = cells(grid)  # builds every cell's settings: a bad one fails before anything is written
    check_destination(folder / CELLS, "write")  # a file in the way or a read-only place: before any cell runs
    with interrupts.stopping(), exclusive([folder], f"grid folder '{folder}' is already being run"):
        try:
            return _run_grid(grid, folder, every_cell, progress, echo, isolate, limit, clock, executor)
        except interrupts.Interrupted as stop:
            if stop.detail is not None:  # in or after a cell (_run_grid says which)
                raise
            raise interrupts.Interrupted(stop.signum, "between cells", resumable=True) from None


def _run_grid(grid: GridSpec, folder: Path, every_cell: list[Cell], progress: ProgressFactory,
              echo: Callable[[str], None], isolate: bool, limit: int | None, clock: Callable[[], float],
              executor: ExecutorSpec) -> GridResult:
    log = folder / CELLS
    done = load_records(log)
    _pin_spec(grid, folder, every_cell, done, echo)
    failed: list[str] = []
    todo, finished = planned(grid, done, every_cell)
    remaining = [c for c in every_cell if done.get(c.id, {}).get("status") != "ok"]
    warned: set[str] = set()  # rank cells whose pick fell back to dev: one warning each

    def picked(cell: Cell) -> bool:  # whether a best-stack seed cell runs: its stack is the one picked
        return _seeded_stack(grid, done, cell, echo, warned) == cell.record.intermediate

    needs = dependencies(every_cell)
    still = [c for c in remaining if not _passed_over(c, needs, done, picked)]
    lost = _lost_artifacts(folder, every_cell, still, needs)
    waits = _waiting(lost, still, needs)  # lost adapters only best-stack seed cells compose: trained once picked

    def gate(cell: Cell) -> bool:  # called once a cell's dependencies (and `waits`) are finished
        if cell.id in waits:
            return any(picked(c) for c in still if c.after is not None and cell.id in needs[c.id])
        return cell.after is None or picked(cell)

    if lost:
        later = f" ({len(waits)} of them once a best stack picks them)" if waits else ""
        note(progress, f"{len(lost)} intermediate adapters recorded as trained are not in {folder / 'zoo'}: "
                       f"training them again{later}")
        remaining = [c for c in every_cell if c in remaining or c.id in lost]
        todo, finished = todo + len(lost) - len(waits), finished - len(lost)
    countdown = Countdown(todo if limit is None else min(todo, limit), clock())
    note(progress, f"grid {folder}: {countdown.total} cells to run, {finished} already done")

    def finish(cell: Cell, values: dict, seconds: float) -> None:
        record = cell.record.updated(**values, cell_seconds=round(seconds, 1))  # training + evaluation
        countdown.finish()
        append_cell(log, record)
        done[cell.id] = record
        if record.status != "ok":
            failed.append(cell.id)
            echo(f"  failed: {cell.id}: {record.error}")
        warning = health.warning(cell.id, record.learning)
        if warning is not None:
            echo(f"  {warning}")

    skipped = len(every_cell) - len(remaining)
    if executor.parallel:
        from .execution import Scheduled, executor_for, run_parallel

        hooks = Scheduled(start=lambda cell: note(progress, countdown.begin(cell.id, clock())), finish=finish,
                          gate=gate, echo=echo, waits=waits)
        ran = run_parallel(grid, folder, remaining, every_cell, executor_for(executor, folder), hooks,
                           executor.retries, limit, clock)
    else:
        ran = _run_serial(grid, folder, _serial_order(remaining, waits, needs), progress, isolate, limit, clock,
                          executor.retries, finish, gate, countdown, echo)
    if ran:
        note(progress, countdown.summary(clock()))
    return GridResult(folder, ran, skipped, failed)


def _passed_over(cell: Cell, needs: dict[str, set[str]], done: dict, gate: Callable[[Cell], bool]) -> bool:
    """A best-stack seed cell whose pick is settled (every first-seed cell it waits for recorded) on another
    intermediate: it will not run, so what it would compose need not be trained again."""
    return cell.after is not None and all(done.get(i, {}).get("status") == "ok" for i in needs[cell.id]) \
        and not gate(cell)


def _lost_artifacts(folder: Path, every_cell: list[Cell], remaining: list[Cell],
                    needs: dict[str, set[str]]) -> set[str]:
    """The intermediate cells recorded ok whose adapter is no longer in the grid's zoo (a grid resumed from a committed
    cells.jsonl on another machine: weights are never committed) that a cell still to run composes or continues,
    directly or through another lost one: they train again."""
    from .. import pipelines
    from ..zoo import Zoo
    from .cells import Kind

    by_id = {c.id: c for c in every_cell}
    zoo, runs = Zoo(folder / "zoo"), folder / "runs"

    def lost(cell: Cell) -> bool:
        return cell.kind is Kind.INTERMEDIATE and cell.spec is not None and \
            not ArtifactLayout(pipelines.destination_of(cell.spec, zoo, runs)[1]).manifest.is_file()

    todo = {c.id for c in remaining}
    wanted, again = list(todo), set()
    while wanted:
        for need in needs.get(wanted.pop(), ()):
            if need not in todo and need not in again and lost(by_id[need]):
                again.add(need)
                wanted.append(need)
    return again


def _waiting(lost: set[str], still: list[Cell], needs: dict[str, set[str]]) -> dict[str, set[str]]:
    """Lost adapter id -> what it waits for, for the lost adapters that only best-stack seed cells not yet passed
    over compose: the cells that settle those cells' pick (their other dependencies). Such an adapter is trained
    again only if a pick needs it: a grid moved to another machine does not retrain every candidate of a pick."""
    out: dict[str, set[str]] = {}
    for adapter in lost:
        users = [c for c in still if adapter in needs[c.id]]
        if users and all(c.after is not None for c in users) and not any(adapter in needs[o] for o in lost):
            out[adapter] = set().union(*(needs[c.id] for c in users)) - {adapter}
    return out


def _serial_order(remaining: list[Cell], waits: dict[str, set[str]], needs: dict[str, set[str]]) -> list[Cell]:
    """`remaining` in grid order, but each waiting lost adapter just before the first cell that composes it (after
    the cells that settle its pick)."""
    waiting = [c for c in remaining if c.id in waits]
    out = [c for c in remaining if c.id not in waits]
    for adapter in waiting:
        first = next(i for i, c in enumerate(out) if adapter.id in needs[c.id])
        out.insert(first, adapter)
    return out


def _run_serial(grid: GridSpec, folder: Path, remaining: list[Cell], progress: ProgressFactory, isolate: bool,
                limit: int | None, clock: Callable[[], float], retries: int, finish: Callable,
                gate: Callable[[Cell], bool], countdown: Countdown, echo: Callable[[str], None]) -> int:
    """The cells one after another, in order, here or each in a forked child (`isolate`)."""
    ran = 0
    for cell in remaining:
        if not gate(cell):
            continue
        if limit is not None and ran >= limit:
            break
        start = clock()
        note(progress, countdown.begin(cell.id, start))
        for attempt in range(retries + 1):
            try:
                values = _isolated(grid, folder, cell, progress) if isolate else _run_cell(grid, folder, cell, progress)
            except interrupts.Interrupted as stop:  # not recorded: the next run of the grid continues the cell
                raise interrupts.Interrupted(stop.signum, f"in cell {cell.id}" + (f" {stop.detail}" if stop.detail
                                                                                   else ""), resumable=True) from None
            if values.get(DIED) is None:
                break
            if attempt < retries:
                echo(f"  {cell.id}: {values['error']}; running it again ({attempt + 1} of {retries} retries)")
        if values.pop(DIED, None) is not None and retries:
            values["error"] += f" (tried {retries + 1} times)"
        finish(cell, values, clock() - start)
        ran += 1
        if interrupts.received() is not None:  # it came as an isolated cell finished: recorded, then stop
            raise interrupts.Interrupted(interrupts.received(), f"after cell {cell.id} finished", resumable=True)
    return ran


def planned(grid: GridSpec, done: dict, every_cell: list[Cell] | None = None) -> tuple[int, int]:
    """(cells a run will start, cells already recorded ok). Of the best-stack seed cells (`after`), one
    per gate and seed runs: the best intermediate's, unless one of them is done already or there is nothing to
    pick by (no dev score, and no rank pick: stack_pick is dev or its rank cell picked nothing). `every_cell`:
    `cells(grid)` where the caller has built them already."""
    todo = finished = 0
    gates, gates_done = set(), set()
    for cell in cells(grid) if every_cell is None else every_cell:
        key = (cell.after, cell.record.seed)
        if done.get(cell.id, {}).get("status") == "ok":
            finished += 1
            gates_done.add(key)
        elif cell.after is None:
            todo += 1
        elif cell.target is not None and (cell.target.dev or _may_rank_pick(grid, done, cell)):
            gates.add(key)
    return todo + len(gates - gates_done), finished


def _may_rank_pick(grid: GridSpec, done: dict, cell: Cell) -> bool:
    """Whether the rank cell of `cell`'s target and method picks (or, not run yet, may pick) its best stack."""
    if grid.stack_pick == DEV:
        return False
    record = done.get(cell.prefix + rank_cell_id(cell.record.target, cell.record.method))
    return record is None or record.get("status") != "ok" or ranked_pick(record) is not None


def _pin_spec(grid: GridSpec, folder: Path, every_cell: list[Cell], done: dict,
              echo: Callable[[str], None]) -> None:
    """A grid folder belongs to one grid: resuming with a different spec would mix results. A changed spec that
    only adds or drops cells not yet run (every recorded cell still in it, with the same settings: a grid cut to
    its budget, a target added) is pinned in its place, with a line saying so."""
    text = dump_yaml(grid)
    pinned = folder / "grid.yaml"
    if pinned.is_file():
        if pinned.read_text(encoding="utf-8") != text:
            added, dropped = _respec(pinned, grid, every_cell, done)
            write_text_atomic(pinned, text)
            cells_added = f"{added} cell" + ("" if added == 1 else "s")
            echo(f"{pinned}: the grid changed ({cells_added} added, {dropped} dropped, none of them run yet; every "
                 "recorded cell is in it unchanged): pinned the new spec")
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(pinned, text)


def _respec(pinned: Path, grid: GridSpec, every_cell: list[Cell], done: dict) -> tuple[int, int]:
    """(cells added, cells dropped) going from the pinned grid to `grid`; refuses the change where a recorded cell
    is not in the new grid or would run with other settings (its record would then describe another cell)."""
    from ..config import build, load_yaml

    refuse = f"{pinned.parent} holds a different grid ({pinned})"
    fix = "use a new folder or the same spec (a changed spec may only add or drop cells not yet run)"
    try:
        data, lines = load_yaml(pinned)
        data.pop("executor", None)
        old_grid = build(GridSpec, data, source=str(pinned), lines=lines)
        before = {c.id: c for c in cells(old_grid)}
    except (ConfigError, StepstoneError, ValueError, TypeError, KeyError) as error:
        raise StepstoneError(f"{refuse}, which this version cannot read ({error}); {fix}") from None
    after = {c.id: c for c in every_cell}
    for cell_id in (i for i in before if i in done):
        if cell_id not in after:
            raise StepstoneError(f"{refuse}: its recorded cell {cell_id} is not in this one; {fix}")
        if _how_it_runs(old_grid, before[cell_id]) != _how_it_runs(grid, after[cell_id]):
            raise StepstoneError(f"{refuse}: its recorded cell {cell_id} would run with other settings in this "
                                 f"one; {fix}")
    return len(set(after) - set(before)), len(set(before) - set(after))


def _how_it_runs(grid: GridSpec, cell: Cell) -> tuple:
    """Everything a cell's record depends on: its settings (training, composition, rank job, gate), its target's
    evaluation (task, splits, languages, data files) and the grid's evaluation settings it runs under (data, examples
    per language, the perturbations it is scored under, rank estimators, the best-stack rule); not the keys that only
    say which cells exist (a target's methods, setups, seeds, intermediates)."""
    target = cell.target
    scored = None if target is None else (target.task, target.train_task, target.train_split, target.split,
                                          target.langs, target.dev, target.data_files)
    perturbed = target is not None and grid.perturbs(cell.record.composition, cell.record.seed)
    return (cell.spec, cell.rank, cell.after, cell.evaluate_artifact, cell.record, scored, grid.data_dir,
            grid.eval_limit, (grid.perturb, grid.perturb_seed) if perturbed else None,
            grid.rank if cell.rank else None, grid.stack_pick if cell.after or cell.rank else None)


def _best_stack(done: dict[str, CellRecord], cell: Cell) -> str | None:
    """The intermediate the best-stack rule picks among the recorded cells of `cell`'s target, method and setup (on
    its backbone: the cells under its prefix)."""
    mine = cell.record
    return best_intermediate(r for r in done.values() if r.get("status") == "ok" and r.get("target") == mine.target
                             and r.get("method") == mine.method and r.get("composition") == mine.composition
                             and r["id"].startswith(cell.prefix))


def _seeded_stack(grid: GridSpec, done: dict[str, CellRecord], cell: Cell, echo: Callable[[str], None],
                  warned: set[str]) -> str | None:
    """The intermediate that gets every seed of `cell`'s target, method and setup: the pick of its rank cell where
    the grid picks by an estimator (`stack_pick`), else (or where that picks nothing, with one warning per rank
    cell) the best-stack rule."""
    if grid.stack_pick == DEV:
        return _best_stack(done, cell)
    mine = cell.record
    rank_id = cell.prefix + rank_cell_id(mine.target, mine.method)
    record = done.get(rank_id)
    pick = ranked_pick(record)
    if pick is not None and pick in (cell.target.intermediates or grid.intermediate):
        return pick
    if rank_id not in warned:
        warned.add(rank_id)
        why = (f"{rank_id} failed" if record is None or record.get("status") != "ok" else
               f"{grid.stack_pick} ranked no intermediate first in {rank_id}" if pick is None else
               f"{rank_id} picked '{pick}', which {mine.target} does not stack")
        echo(f"  warning: {why}: the best stack of {mine.target} [{mine.method}] goes by English dev instead")
    return _best_stack(done, cell)


def _isolated(grid: GridSpec, folder: Path, cell: Cell, progress: ProgressFactory) -> dict:
    """Run one cell in a forked child (execution.ForkedWorkers with one slot); a child that dies is a failed cell,
    not a dead grid."""
    workers = ForkedWorkers(1, None, [], job=lambda grid, folder, cell: cell_job(grid, folder, cell, progress))
    # a signal to the grid alone (SIGTERM from a scheduler) stops the cell too; the grid waits for it to stop
    with interrupts.deferred(then=workers.stop):
        handle = workers.start(grid, folder, cell, 0)
        (_, outcome), = workers.wait([handle], timeout=None)
    if outcome.interrupted is not None:
        raise interrupts.Interrupted(*outcome.interrupted)
    if outcome.died is not None and interrupts.received() is not None:
        raise interrupts.Interrupted(interrupts.received())
    if outcome.died is not None:
        return {"status": "error", "error": outcome.died, DIED: True}
    return outcome.values


def _run_cell(grid: GridSpec, folder: Path, cell: Cell, progress: ProgressFactory) -> dict:
    from .. import pipelines
    from ..zoo import Zoo

    zoo, runs = Zoo(folder / "zoo"), folder / "runs"
    try:
        result: dict = {"status": "ok", "error": None}
        if cell.rank is not None:
            return {**result, "ranking": _rank(grid, cell, zoo, progress)}
        artifact = cell.evaluate_artifact
        if cell.spec is not None:
            spec = cell.spec
            if spec.init_from is not None and not spec.init_from.is_absolute():  # a run of the grid's, or its zoo's
                spec = replace(spec, init_from=(runs if spec.method.kind == "full" else zoo.root) / spec.init_from)
            _, path = pipelines.destination_of(spec, zoo, runs)
            if not ArtifactLayout(path).manifest.is_file():  # saved before an interruption: reuse it
                # a cell killed mid-training continues from its checkpoint
                resume = pipelines.checkpoints_of(replace(spec, train=spec.train.resolved(spec.method.kind)),
                                                  runs).latest() is not None
                pipelines.train_run(spec, zoo=zoo, runs_dir=runs, progress=progress, resume=resume)
            manifest = read_manifest(path, verify=False)
            result.update(_costs(manifest))
            artifact = str(path)
        if cell.target is not None:
            result.update(_evaluate(grid, folder, cell, artifact, zoo, manifest if cell.spec is not None else None,
                                    progress))
        return result
    except Exception as err:  # noqa: BLE001 -- any failure is recorded and the grid goes on
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return {"status": "error", "error": f"{type(err).__name__}: {message}"[:500]}


def _evaluate(grid: GridSpec, folder: Path, cell: Cell, artifact: str | None, zoo, manifest: Manifest | None,
              progress: ProgressFactory) -> dict:
    """A cell's zero-shot evaluation: its main metric per language, the other metrics (`secondary`), under each of
    the grid's perturbations (trained targets) and on each of its target's data files (`domain`)."""
    from .. import pipelines

    target, task = cell.target, get_task(cell.target.task)
    langs = list(target.langs) if target.langs else _languages(task, Split(target.split), grid.data_dir)
    output = folder / "evaluations" / f"{cell.id.replace('/', '__')}.json"
    common = dict(task=task.name, zoo=zoo, split=target.split, data_dir=grid.data_dir, max_examples=grid.eval_limit,
                  backbone=None if artifact else (cell.record.backbone or _backbone(grid).name), progress=progress)
    perturb = grid.perturb if task.trainable and grid.perturbs(cell.record.composition, cell.record.seed) else ()
    evaluation = pipelines.evaluate(artifact, langs=langs, output=output, perturb=perturb,
                                    perturb_seed=grid.perturb_seed, skip_examples=_trained_front(target, manifest),
                                    **common)
    main = evaluation.metric
    result = {"metric": main, "scores": {lang: s[main] for lang, s in evaluation.scores.items()}}
    others = sorted({k for s in evaluation.scores.values() for k in s} - {main})
    if others and task.trainable:
        result["secondary"] = {k: {lang: s[k] for lang, s in evaluation.scores.items() if k in s} for k in others}
    if perturb:
        result["perturbed"] = {label: {lang: s[main] for lang, s in by_lang.items()}
                               for label, by_lang in evaluation.perturbed.items()}
    if evaluation.statistics:  # what `stepstone report`'s confidence intervals resample
        result["statistics"] = {"statistic": task.metric.statistic,
                                "scores": {lang: stats.encode(v) for lang, v in evaluation.statistics.items()},
                                **({"perturbed": {label: {lang: stats.encode(v) for lang, v in by_lang.items()}
                                                  for label, by_lang in evaluation.perturbed_statistics.items()}}
                                   if evaluation.perturbed_statistics else {})}
    domain = {}
    for i, path in enumerate(target.data_files or ()):
        shifted = pipelines.evaluate(artifact, langs=[task.train_language], data_file=Path(path),
                                     output=output.with_name(f"{output.stem}.domain{i}.json"), **common)
        domain[shifted.domain["label"]] = shifted.domain["scores"][main]
    if domain:
        result["domain"] = domain
    return result


def _rank(grid: GridSpec, cell: Cell, zoo, progress: ProgressFactory) -> dict:
    """A rank cell: `stepstone.ranking.rank` over the intermediate adapters its target's Stack cells compose."""
    from .. import ranking  # looked up at call time: tests put a stand-in there

    job = cell.rank
    result = ranking.rank(cell.record.train_task, candidates=list(job.candidates), estimators=grid.rank,
                          examples=job.examples, data_dir=grid.data_dir, zoo=zoo,
                          backbone=cell.record.backbone or _backbone(grid).name,
                          method=cell.record.method, train_split=cell.target.train_split, steps=job.steps,
                          train=job.train, progress=progress)
    return result.to_dict()


def _trained_front(target, manifest: Manifest | None) -> int:
    """The examples a target cell evaluates past: those it trained on, where it trains on the front of the split it
    is evaluated on (XNLI and PAWS-X dev here: parallel across languages, so their first examples in every language
    are translations of the English ones it trained on). 0 elsewhere."""
    if manifest is None or target.train_split != target.split or manifest.data is None:
        return 0
    return manifest.data.train_examples or 0


def _costs(manifest: Manifest) -> dict:
    return {"trainable_parameters": manifest.trainable.parameters,
            "trainable_percent": manifest.trainable.percent_of_backbone,
            "weights_bytes": manifest.weights_bytes, "train_seconds": manifest.train_seconds,
            "peak_rss_mb": manifest.peak_rss_mb, "dev": manifest.metrics.main_dev,
            "train_examples": None if manifest.data is None else manifest.data.train_examples,
            "artifact": manifest.name, "learning": manifest.learning}  # stepstone.health's verdict


def _languages(task: TaskSpec, split: Split, data_dir: Path | None) -> list[str]:
    """Every language of the benchmark's list for the task (as `stepstone evaluate` defaults to; not the further
    languages its source has, e.g. MLQA's language pairs) with data for `split` (`tasks.examples.missing_data`: a local file,
    another task's for a borrowed English split, or the hub)."""
    from ..tasks.examples import missing_data

    found = [lang for lang in task.official_languages if missing_data(task, split, lang, data_dir) is None]
    if not found:
        raise StepstoneError(f"no {split.value} data for task '{task.name}' in any language under {data_dir}")
    return found
