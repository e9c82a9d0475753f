"""Transfer-experiment grids: intermediate tasks x target tasks x methods x compositions x seeds.

`run_grid` expands a GridSpec into cells, trains each intermediate adapter once (into the grid's zoo)
and reuses it in every cell that composes it, evaluates every target cell zero-shot, and appends one
JSON line per finished cell to GRID_DIR/cells.jsonl. Re-running continues: cells recorded as ok are
skipped, failed cells are retried, an artifact saved before an interruption is reused. A cell that
fails is recorded with its error and the grid goes on. `stepstone report GRID_DIR` reads cells.jsonl.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator

from . import interrupts
from .artifacts import read_manifest, write_text_atomic
from .composition import parse
from .config import dotted_path, build, dump_yaml, load_yaml, merge, parse_overrides, to_dict
from .errors import ConfigError, StepstoneError, choices
from .progress import ProgressFactory, silent
from .specs import BackboneSpec, MethodKind, MethodSpec, RunSpec, TrainSpec
from .tasks import TASKS, Split, TaskSpec, get_task

CELLS = "cells.jsonl"


class Preset(str, Enum):
    """Budget presets: backbone and training sizes (README lists them)."""

    TINY = "tiny"  # the random tiny backbone and toy sizes: tests
    CPU_SMALL = "cpu-small"  # multilingual-e5-small, subsampled data, short sequences: ~1 h on 2 CPU cores
    PAPER = "paper"  # XLM-R Large and Phang et al.'s recipe: a GPU


PRESETS: dict[Preset, tuple[str, TrainSpec, TrainSpec, int | None]] = {
    # backbone, adapter training, full fine-tune training, evaluation examples per language
    Preset.TINY: ("tiny", TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16),
                  TrainSpec(lr=1e-3, epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16), 16),
    # measured on e5-small, 2 threads: UD-POS bottleneck 500 x 2 epochs at lr 5e-3 -> 94.1 dev accuracy, 65 s;
    # full fine-tune 250 x 2 epochs: lr 5e-5 -> 31-49 dev accuracy (32 steps are too few), lr 3e-4 -> 86.0
    Preset.CPU_SMALL: ("intfloat/multilingual-e5-small",
                       TrainSpec(lr=5e-3, epochs=2, batch_size=16, max_length=96, max_train_examples=500,
                                 max_eval_examples=200),
                       TrainSpec(lr=3e-4, epochs=2, batch_size=16, max_length=96, max_train_examples=500,
                                 max_eval_examples=200), 200),
    Preset.PAPER: ("xlm-roberta-large", TrainSpec(lr=1e-4, epochs=3, batch_size=4, grad_accum=8, max_length=256),
                   TrainSpec(lr=1e-5, epochs=3, batch_size=4, grad_accum=8, max_length=256), None),
}


class Setup(str, Enum):
    """How a target cell uses the intermediate tasks."""

    NONE = "none"  # target adapter alone
    STACK = "stack"  # Stack(intermediate, target), one cell per intermediate task
    FUSE = "fuse"  # Fuse(all intermediates) + target (bottleneck only)
    MULTITASK = "multitask"  # Stack(one adapter trained on all intermediates, target)


@dataclass(frozen=True)
class TargetSpec:
    """A target task. train_task: train on this task instead (same output space), e.g. XNLI trained on
    ANLI; train_split: validation where only English dev data exists (PAWS-X here: it trains on the front
    of the split and holds out its end as dev); split: the evaluation split; langs: evaluation languages
    (None = every language with data)."""

    task: str
    train_task: str | None = None
    train_split: str = "train"
    split: str = "test"
    langs: tuple[str, ...] | None = None
    dev: bool = True  # False where the training task has no English dev data here (no selection then)
    # per-target narrowing of the grid (None = the grid's): adapter methods, setups, seeds (also the full
    # fine-tune's), whether the full fine-tune baseline runs
    methods: tuple[MethodKind, ...] | None = None
    setups: tuple[Setup, ...] | None = None
    seeds: tuple[int, ...] | None = None
    full_finetune: bool | None = None
    intermediates: tuple[str, ...] | None = None  # stack only these (e.g. not the target's own training task)


@dataclass(frozen=True)
class GridSpec:
    """A grid. seeds apply to target cells; stack_all_seeds=False runs every Stack(intermediate) with the
    first seed and only the best intermediate (highest English dev score) with every seed."""

    intermediate: tuple[str, ...]
    targets: tuple[TargetSpec, ...]
    preset: Preset = Preset.CPU_SMALL
    backbone: BackboneSpec | None = None
    data_dir: Path | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[MethodKind, ...] = (MethodKind.BOTTLENECK, MethodKind.LORA)
    setups: tuple[Setup, ...] = (Setup.NONE, Setup.STACK, Setup.FUSE, Setup.MULTITASK)
    method_setups: dict[MethodKind, tuple[Setup, ...]] = field(default_factory=dict)  # per method, instead of setups
    single_seed: tuple[Setup, ...] = ()  # setups run with the first seed only (e.g. multitask, to save time)
    eval_examples: int | None = None  # zero-shot evaluation examples per language (None: the preset's)
    full_finetune: bool = True
    full_after: tuple[str, ...] = ()  # intermediate tasks for the paper's full intermediate -> target runs
    stack_all_seeds: bool = False
    intermediate_splits: dict[str, str] = field(default_factory=dict)  # task -> split that trains it (default train)
    no_dev: tuple[str, ...] = ()  # intermediate tasks without English dev data here: trained without dev selection
    train: dict = field(default_factory=dict)  # TrainSpec overrides on top of the preset

    def __post_init__(self):
        if MethodKind.FULL in self.methods:
            raise ValueError("methods are adapter methods; the full fine-tune baseline is `full_finetune`")
        if not self.seeds or not self.targets:
            raise ValueError("a grid needs seeds and targets")
        unknown = sorted(set(self.no_dev) - set(self.intermediate))
        if unknown:
            raise ValueError(f"no_dev names tasks that are not intermediate tasks: {', '.join(unknown)} "
                             f"(intermediate: {', '.join(self.intermediate)})")
        for target in self.targets:
            extra = set(target.methods or ()) - set(self.methods)
            if extra:
                raise ValueError(f"target '{target.task}' names methods the grid does not train: "
                                 f"{', '.join(sorted(m.value for m in extra))} (grid methods: "
                                 f"{', '.join(m.value for m in self.methods)})")
            if target.seeds is not None and not target.seeds:
                raise ValueError(f"target '{target.task}' has an empty seeds list")
            stray = sorted(set(target.intermediates or ()) - set(self.intermediate))
            if stray:
                raise ValueError(f"target '{target.task}' stacks tasks that are not intermediate tasks: "
                                 f"{', '.join(stray)} (intermediate: {', '.join(self.intermediate)})")

    def setups_for(self, method: MethodKind) -> tuple[Setup, ...]:
        return self.method_setups.get(method, self.setups)

    def seeds_for(self, setup: Setup, target: TargetSpec) -> tuple[int, ...]:
        seeds = target.seeds or self.seeds
        return seeds[:1] if setup in self.single_seed else seeds

    @property
    def eval_limit(self) -> int | None:
        return self.eval_examples if self.eval_examples is not None else PRESETS[self.preset][3]


@dataclass(frozen=True)
class Cell:
    id: str
    kind: str  # intermediate | target | retrieval
    spec: RunSpec | None  # None: evaluation only
    record: dict  # what goes into cells.jsonl besides results
    target: TargetSpec | None = None
    evaluate_artifact: str | None = None  # retrieval cells: run/zoo entry to evaluate (None = bare backbone)
    after: str | None = None  # cell whose result decides whether this one runs (best-stack seeds)


def load_grid(path: Path, overrides: tuple[str, ...] = ()) -> GridSpec:
    """Read and check a grid file: keys, types, and every task name (file:line) before anything runs."""
    data, lines = load_yaml(path)
    grid = build(GridSpec, merge(data, parse_overrides(overrides)), source=str(path), lines=lines)
    named = [(("intermediate", f"[{i}]"), t) for i, t in enumerate(grid.intermediate)]
    named += [(("full_after", f"[{i}]"), t) for i, t in enumerate(grid.full_after)]
    for i, target in enumerate(grid.targets):
        named += [(("targets", f"[{i}]", key), getattr(target, key)) for key in ("task", "train_task")
                  if getattr(target, key) is not None]
        named += [(("targets", f"[{i}]", "intermediates", f"[{j}]"), t)
                  for j, t in enumerate(target.intermediates or ())]
    problems = [(f"{path}:{lines[key]}: " if key in lines else f"{path}: ")
                + f"unknown task '{name}' in '{dotted_path(key)}' (valid: {choices(TASKS)})"
                for key, name in named if name not in TASKS]
    if problems:
        raise ConfigError(problems)
    return grid


def _train_spec(grid: GridSpec, full: bool, seed: int, dev: bool = True) -> TrainSpec:
    base = PRESETS[grid.preset][2 if full else 1]
    data = merge(to_dict(base), grid.train)
    data.update(seed=seed, select_best=dev and data.get("select_best", True), dev=dev)
    return build(TrainSpec, data, source="grid train settings")


def _backbone(grid: GridSpec) -> BackboneSpec:
    return grid.backbone or BackboneSpec(PRESETS[grid.preset][0])


def cells(grid: GridSpec) -> list[Cell]:
    """Every cell, in an order where what a cell composes is trained before it."""
    out: list[Cell] = []
    backbone, first = _backbone(grid), grid.seeds[0]
    common = dict(backbone=backbone, data_dir=grid.data_dir)
    zoo_name = {}
    splits = grid.intermediate_splits
    for method in grid.methods:
        m = MethodSpec(kind=method)
        wanted = set(grid.setups_for(method))
        for task in grid.intermediate if wanted & {Setup.STACK, Setup.FUSE} else ():
            name = zoo_name[(method, task)] = f"{method.value}-{task}"
            out.append(Cell(f"intermediate/{method.value}/{task}", "intermediate",
                            RunSpec(task=task, name=name, method=m,
                                    train=_train_spec(grid, False, first, task not in grid.no_dev),
                                    train_splits=splits, **common),
                            {"task": task, "method": method.value, "composition": "intermediate", "seed": first}))
        if Setup.MULTITASK in wanted and len(grid.intermediate) > 1:
            name = zoo_name[(method, "multitask")] = f"{method.value}-multitask"
            out.append(Cell(f"intermediate/{method.value}/multitask", "intermediate",
                            RunSpec(task=grid.intermediate, name=name, method=m, train_splits=splits,
                                    train=_train_spec(grid, False, first, not grid.no_dev), **common),
                            {"task": "multitask", "method": method.value, "composition": "intermediate", "seed": first}))
    for task in grid.full_after:
        out.append(Cell(f"intermediate/full/{task}", "intermediate",
                        RunSpec(task=task, name=f"full-{task}", method=MethodSpec(kind=MethodKind.FULL),
                                train=_train_spec(grid, True, first, task not in grid.no_dev),
                                train_splits=splits, **common),
                        {"task": task, "method": "full", "composition": "intermediate", "seed": first}))
    for target in grid.targets:
        task = get_task(target.task)
        if not task.trainable:
            out.append(Cell(f"retrieval/{target.task}/backbone", "retrieval", None,
                            {"target": target.task, "method": None, "composition": "none"}, target))
            for (method, inter), name in zoo_name.items():
                out.append(Cell(f"retrieval/{target.task}/{method.value}/{inter}", "retrieval", None,
                                {"target": target.task, "method": method.value, "composition": "intermediate",
                                 "intermediate": inter}, target, evaluate_artifact=name))
            continue
        out.extend(_target_cells(grid, target, zoo_name, common))
    return out


def _target_cells(grid: GridSpec, target: TargetSpec, zoo_name: dict, common: dict) -> Iterator[Cell]:
    train_task = target.train_task or target.task
    dev = target.dev
    base = {"target": target.task, "train_task": train_task}
    seeds = target.seeds or grid.seeds
    for method in target.methods or grid.methods:
        m = MethodSpec(kind=method)
        setups = [s for s in grid.setups_for(method) if target.setups is None or s in target.setups]
        for seed in seeds:
            def cell(setup: str, compose: str | None, inter: str | None = None, after: str | None = None) -> Cell:
                label = setup if inter is None else f"{setup}-{inter}"
                name = f"{target.task}-{method.value}-{label}-s{seed}"
                spec = RunSpec(task=train_task, name=name, method=m, train=_train_spec(grid, False, seed, dev),
                               compose=parse(compose) if compose else None, train_split=target.train_split, **common)
                return Cell(f"target/{target.task}/{method.value}/{label}/seed{seed}", "target", spec,
                            {**base, "method": method.value, "composition": setup, "intermediate": inter, "seed": seed},
                            target, after=after)

            def wanted(setup: Setup) -> bool:
                return setup in setups and seed in grid.seeds_for(setup, target)
            if wanted(Setup.NONE):
                yield cell("none", None)
            if wanted(Setup.STACK):
                for inter in target.intermediates or grid.intermediate:
                    gate = None if seed == seeds[0] or grid.stack_all_seeds else f"best-stack/{target.task}/{method.value}"
                    yield cell("stack", f"Stack({zoo_name[(method, inter)]})", inter, after=gate)
            if wanted(Setup.FUSE) and method is MethodKind.BOTTLENECK and len(grid.intermediate) > 1:
                yield cell("fuse", f"Fuse({', '.join(zoo_name[(method, t)] for t in grid.intermediate)})")
            if wanted(Setup.MULTITASK) and (method, "multitask") in zoo_name:
                yield cell("multitask", f"Stack({zoo_name[(method, 'multitask')]})")
    full = MethodSpec(kind=MethodKind.FULL)
    full_finetune = grid.full_finetune if target.full_finetune is None else target.full_finetune
    for seed in seeds if full_finetune else ():
        name = f"{target.task}-full-s{seed}"
        yield Cell(f"target/{target.task}/full/full/seed{seed}", "target",
                   RunSpec(task=train_task, name=name, method=full, train=_train_spec(grid, True, seed, dev),
                           train_split=target.train_split, **common),
                   {**base, "method": "full", "composition": "full", "seed": seed}, target)
        for inter in grid.full_after:
            yield Cell(f"target/{target.task}/full/full-after-{inter}/seed{seed}", "target",
                       RunSpec(task=train_task, name=f"{name}-after-{inter}", method=full,
                               train=_train_spec(grid, True, seed, dev), train_split=target.train_split,
                               init_from=Path(f"full-{inter}"), **common),  # under the grid's runs/
                       {**base, "method": "full", "composition": "full-after-intermediate", "intermediate": inter,
                        "seed": seed}, target)


# ------------------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class GridResult:
    folder: Path
    ran: int
    skipped: int
    failed: list[str]


def read_cells(path: Path, check: Callable[[str, str], dict] | None = None) -> dict[str, dict]:
    """Cell id -> its last record in cells.jsonl (a retried cell's newest line wins); no file: no records.

    `check(line, "file:line")` parses and validates one line (default: a JSON object with an 'id'). An
    unreadable last line without its newline is a write cut short by a kill: it is skipped and that cell
    reruns. Any other bad line is an error naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except UnicodeDecodeError as err:
        raise StepstoneError(f"{path}: not UTF-8 text ({err})") from None
    lines = text.splitlines()
    records: dict[str, dict] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = (check or _record)(line, f"{path}:{number}")
        except StepstoneError:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise
        records[record["id"]] = record
    return records


def _record(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or "id" not in record:
        raise StepstoneError(f"{where}: not a cell record")
    return record


def load_records(path: Path) -> dict[str, dict]:
    """The records the runner resumes from (`read_cells` with the minimal check)."""
    return read_cells(path)


def run_grid(grid: GridSpec, folder: Path, *, progress: ProgressFactory = silent,
             echo: Callable[[str], None] = lambda line: None, isolate: bool = True,
             limit: int | None = None) -> GridResult:
    """Run (or continue) `grid` in `folder`. isolate: each training / evaluation in its own forked process
    (a crash cannot take the grid down, and peak memory is per cell). limit: stop after that many cells
    (tests use it to simulate an interruption). One grid at a time per folder: a second is refused at once.
    SIGINT / SIGTERM stop the cell in progress as they stop `train` (its checkpoint saved, nothing recorded
    for it) and raise `Interrupted` naming the cell; running the grid again continues it."""
    from .locks import exclusive

    folder = Path(folder)
    with interrupts.stopping(), exclusive([folder], f"grid folder '{folder}' is already being run"):
        try:
            return _run_grid(grid, folder, progress, echo, isolate, limit)
        except interrupts.Interrupted as stop:
            if stop.detail is not None:  # in or after a cell (_run_grid says which)
                raise
            raise interrupts.Interrupted(stop.signum, "between cells", resumable=True) from None


def _run_grid(grid: GridSpec, folder: Path, progress: ProgressFactory, echo: Callable[[str], None], isolate: bool,
              limit: int | None) -> GridResult:
    _pin_spec(grid, folder)
    log = folder / CELLS
    done = load_records(log)
    ran = skipped = 0
    failed: list[str] = []
    for cell in cells(grid):
        if done.get(cell.id, {}).get("status") == "ok":
            skipped += 1
            continue
        if cell.after is not None and _best_stack(done, cell) != cell.record["intermediate"]:
            continue
        if limit is not None and ran >= limit:
            break
        echo(f"cell {cell.id}")
        start = time.monotonic()
        try:
            record = (_isolated if isolate else _run_cell)(grid, folder, cell, progress)
        except interrupts.Interrupted as stop:  # not recorded: the next run of the grid continues the cell
            raise interrupts.Interrupted(stop.signum, f"in cell {cell.id}" + (f" {stop.detail}" if stop.detail else ""),
                                         resumable=True) from None
        record = {"id": cell.id, "kind": cell.kind, "train_language": "en", **cell.record, **record,
                  "cell_seconds": round(time.monotonic() - start, 1)}  # wall time: training + evaluation
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        done[cell.id] = record
        ran += 1
        if record["status"] != "ok":
            failed.append(cell.id)
            echo(f"  failed: {record['error']}")
        if interrupts.received() is not None:  # it came as an isolated cell finished: recorded, then stop
            raise interrupts.Interrupted(interrupts.received(), f"after cell {cell.id} finished", resumable=True)
    return GridResult(folder, ran, skipped, failed)


def _pin_spec(grid: GridSpec, folder: Path) -> None:
    """A grid folder belongs to one grid: resuming with a different spec would mix results."""
    text = dump_yaml(grid)
    pinned = folder / "grid.yaml"
    if pinned.is_file():
        if pinned.read_text(encoding="utf-8") != text:
            raise StepstoneError(f"{folder} holds a different grid ({pinned}); use a new folder or the same spec")
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(pinned, text)


def _best_stack(done: dict[str, dict], cell: Cell) -> str | None:
    """The intermediate whose first-seed Stack cell has the best English dev score (same target, method)."""
    target, method = cell.record["target"], cell.record["method"]
    candidates = [r for r in done.values() if r.get("status") == "ok" and r.get("composition") == "stack"
                  and r.get("target") == target and r.get("method") == method and r.get("dev") is not None]
    if not candidates:
        return None
    first = min(r["seed"] for r in candidates)
    return max((r for r in candidates if r["seed"] == first), key=lambda r: (r["dev"], r["intermediate"]))["intermediate"]


def _isolated(grid: GridSpec, folder: Path, cell: Cell, progress: ProgressFactory) -> dict:
    """Run one cell in a forked child; a child that dies is a failed cell, not a dead grid."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        try:
            with interrupts.stopping():
                send.send(_run_cell(grid, folder, cell, progress))
        except interrupts.Interrupted as stop:
            send.send({INTERRUPTED: [stop.signum, stop.detail]})

    def forward(signum: int) -> None:  # a signal to the grid alone (SIGTERM from a scheduler) stops the cell too
        if process.pid is not None:
            os.kill(process.pid, signum)

    process = context.Process(target=child)
    with interrupts.deferred(then=forward):  # the grid waits for the cell to stop, and its checkpoint
        process.start()
        send.close()
        try:
            record = receive.recv()
        except EOFError:  # the child died before sending its record
            record = None
        process.join()
    if isinstance(record, dict) and INTERRUPTED in record:
        raise interrupts.Interrupted(*record[INTERRUPTED])
    if record is None and interrupts.received() is not None:
        raise interrupts.Interrupted(interrupts.received())
    if record is None:
        return {"status": "error", "error": f"cell process died (exit code {process.exitcode})"}
    return record


INTERRUPTED = "interrupted"  # what an isolated cell sends instead of its record when a signal stopped it


def _run_cell(grid: GridSpec, folder: Path, cell: Cell, progress: ProgressFactory) -> dict:
    from . import pipelines
    from .zoo import Zoo

    zoo, runs = Zoo(folder / "zoo"), folder / "runs"
    try:
        result: dict = {"status": "ok", "error": None}
        artifact = cell.evaluate_artifact
        if cell.spec is not None:
            spec = cell.spec
            if spec.init_from is not None and not spec.init_from.is_absolute():
                spec = replace(spec, init_from=runs / spec.init_from)
            standalone = spec.compose is None and spec.method.kind is not MethodKind.FULL
            path = zoo.path(spec.run_name) if standalone else runs / spec.run_name
            if not (path / "manifest.json").is_file():  # saved before an interruption: reuse it
                # a cell killed mid-training continues from its checkpoint
                resume = pipelines.checkpoints_of(replace(spec, train=spec.train.resolved(spec.method.kind)),
                                                  runs).latest() is not None
                pipelines.train_run(spec, zoo=zoo, runs_dir=runs, progress=progress, resume=resume)
            manifest = read_manifest(path, verify=False)
            result.update(_costs(manifest))
            artifact = str(path)
        if cell.target is not None:
            target, task = cell.target, get_task(cell.target.task)
            langs = list(target.langs) if target.langs else _languages(task, Split(target.split), grid.data_dir)
            evaluation = pipelines.evaluate(
                artifact, task=task.name, zoo=zoo, langs=langs, split=target.split, data_dir=grid.data_dir,
                max_examples=grid.eval_limit, backbone=None if artifact else _backbone(grid).name,
                output=folder / "evaluations" / f"{cell.id.replace('/', '__')}.json", progress=progress)
            result.update(metric=evaluation.metric,
                          scores={lang: s[evaluation.metric] for lang, s in evaluation.scores.items()})
        return result
    except Exception as err:  # noqa: BLE001 -- any failure is recorded and the grid goes on
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return {"status": "error", "error": f"{type(err).__name__}: {message}"[:500]}


def _costs(manifest: dict) -> dict:
    metrics = manifest["metrics"]
    return {"trainable_parameters": manifest["trainable"]["parameters"],
            "trainable_percent": manifest["trainable"]["percent_of_backbone"],
            "weights_bytes": manifest["weights_bytes"], "train_seconds": manifest["train_seconds"],
            "peak_rss_mb": manifest["peak_rss_mb"], "dev": metrics["dev"].get(metrics["main"]),
            "artifact": manifest["name"]}


def _languages(task: TaskSpec, split: Split, data_dir: Path | None) -> list[str]:
    """Every language of the task with a local file for `split` (all of them when data come from the hub)."""
    local = getattr(task.source, "local", None)
    if data_dir is None or local is None:
        return list(task.languages)
    found = [lang for lang in task.languages
             if any((Path(data_dir) / path).is_file() for path, _ in local.paths(split, lang))]
    if not found:
        raise StepstoneError(f"no {split.value} data for task '{task.name}' in any language under {data_dir}")
    return found
