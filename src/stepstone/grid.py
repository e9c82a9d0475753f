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

from . import health, interrupts
from .artifacts import append_line, check_destination, write_text_atomic
from .composition import parse
from .config import dotted_path, build, dump_yaml, load_yaml, merge, parse_overrides, to_dict
from .errors import ConfigError, StepstoneError, choices, did_you_mean
from .manifest import ArtifactLayout, Manifest, read_manifest
from .progress import Countdown, ProgressFactory, note, silent
from .methods import METHODS, Family, MethodName
from .specs import BackboneSpec, Block, MethodSpec, RunSpec, TrainSpec
from .tasks import TASKS, Split, TaskFormat, TaskSpec, get_task

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
    # measured on e5-small, 2 threads: full fine-tune of UD-POS, 250 x 2 epochs: lr 5e-5 -> 31-49 dev accuracy (32
    # steps are too few), lr 3e-4 -> 86.0. The adapter lr is per task family (FAMILIES)
    Preset.CPU_SMALL: ("intfloat/multilingual-e5-small",
                       TrainSpec(lr=1e-3, epochs=2, batch_size=16, max_length=96, max_train_examples=500,
                                 max_eval_examples=200),
                       TrainSpec(lr=3e-4, epochs=2, batch_size=16, max_length=96, max_train_examples=500,
                                 max_eval_examples=200), 200),
    Preset.PAPER: ("xlm-roberta-large", TrainSpec(lr=1e-4, epochs=3, batch_size=4, grad_accum=8, max_length=256),
                   TrainSpec(lr=1e-5, epochs=3, batch_size=4, grad_accum=8, max_length=256), None),
}
# Per task family (format): what a preset trains differently from its recipe above, as (adapter, full fine-tune)
# TrainSpec overrides. cpu-small's adapter lr, measured on e5-small (benchmarks/results/calibration-e5-small.json):
# tagging needs 5e-3 on short runs (UD-POS, 500 examples x 1 epoch: 87.4 dev accuracy at 5e-3, 29.9 at 1e-3); pair
# classification learns more at 1e-3 (XNLI, 1,000 x 2: 45.0 vs 40.5, majority class 33.5) and SST-2 is close (88.0
# vs 85.5). Issue 13 saw sentence-level, multiple-choice and QA adapters stay at their chance loss at 5e-3 (the
# committed cpu-small report: XNLI and PAWS-X at the majority class); 1e-3 learned every one of them that learned at
# all here (TyDiQA's loss 4.56 -> 2.69; COPA, 400 examples, learned at neither rate), so it is the default and
# tagging the exception. The paper trains QA on 384-token windows (Phang et al. 2020).
FAMILIES: dict[Preset, dict[TaskFormat, tuple[dict, dict]]] = {
    Preset.CPU_SMALL: {TaskFormat.TAGGING: ({"lr": 5e-3}, {})},
    Preset.PAPER: {TaskFormat.QA: ({"max_length": 384, "doc_stride": 128}, {"max_length": 384, "doc_stride": 128})},
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
    methods: tuple[MethodName, ...] | None = None
    setups: tuple[Setup, ...] | None = None
    seeds: tuple[int, ...] | None = None
    full_finetune: bool | None = None
    intermediates: tuple[str, ...] | None = None  # stack only these (e.g. not the target's own training task)

    def __post_init__(self):
        if self.train_split not in ("train", "validation"):
            raise ValueError(f"target '{self.task}': train_split must be train or validation (got '{self.train_split}')")
        if self.split not in {s.value for s in Split}:
            raise ValueError(f"target '{self.task}': split must be one of: {choices(s.value for s in Split)} "
                             f"(got '{self.split}')")
        for name in ("methods", "intermediates"):  # an empty list would silently mean all of them
            if getattr(self, name) is not None and not getattr(self, name):
                what = "methods" if name == "methods" else "intermediate tasks"
                raise ValueError(f"target '{self.task}' has an empty {name} list: omit it for all of the grid's {what}")


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
    methods: tuple[MethodName, ...] = ("bottleneck", "lora")
    setups: tuple[Setup, ...] = (Setup.NONE, Setup.STACK, Setup.FUSE, Setup.MULTITASK)
    method_setups: dict[MethodName, tuple[Setup, ...]] = field(default_factory=dict)  # per method, instead of setups
    single_seed: tuple[Setup, ...] = ()  # setups run with the first seed only (e.g. multitask, to save time)
    eval_examples: int | None = None  # zero-shot evaluation examples per language (None: the preset's)
    full_finetune: bool = True
    full_after: tuple[str, ...] = ()  # intermediate tasks for the paper's full intermediate -> target runs
    stack_all_seeds: bool = False
    intermediate_splits: dict[str, str] = field(default_factory=dict)  # task -> split that trains it (default train)
    no_dev: tuple[str, ...] = ()  # intermediate tasks without English dev data here: trained without dev selection
    train: dict = field(default_factory=dict)  # TrainSpec overrides on top of the preset
    # per task family (format): adapter / full fine-tune TrainSpec overrides on top of `train`
    train_by_format: dict[TaskFormat, dict] = field(default_factory=dict)
    full_train_by_format: dict[TaskFormat, dict] = field(default_factory=dict)
    multitask_train: dict = field(default_factory=dict)  # the multitask adapter's, where its families differ

    def __post_init__(self):
        if any(METHODS.get(m).family is Family.FULL for m in self.methods):
            raise ValueError("methods are adapter methods; the full fine-tune baseline is `full_finetune`")
        if not self.seeds or not self.targets:
            raise ValueError("a grid needs seeds and targets")
        unknown = sorted(set(self.no_dev) - set(self.intermediate))
        if unknown:
            raise ValueError(f"no_dev names tasks that are not intermediate tasks: {', '.join(unknown)} "
                             f"(intermediate: {', '.join(self.intermediate)})")
        unknown = sorted(set(self.intermediate_splits) - set(self.intermediate) - set(self.full_after))
        if unknown:
            raise ValueError(f"intermediate_splits names tasks that are not intermediate tasks: {', '.join(unknown)} "
                             f"(intermediate: {', '.join(dict.fromkeys(self.intermediate + self.full_after))})")
        bad = sorted(f"{t}: {s}" for t, s in self.intermediate_splits.items() if s not in ("train", "validation"))
        if bad:
            raise ValueError(f"intermediate_splits must be train or validation (got {', '.join(bad)})")
        stray = sorted(set(self.method_setups) - set(self.methods))
        if stray:
            raise ValueError(f"method_setups names methods the grid does not train: {', '.join(stray)} "
                             f"(grid methods: {', '.join(self.methods)})")
        untrained = [f.value for f in (*self.train_by_format, *self.full_train_by_format) if f is TaskFormat.RETRIEVAL]
        if untrained:
            raise ValueError("train_by_format / full_train_by_format: retrieval tasks are not trained (valid: "
                             f"{', '.join(f.value for f in TaskFormat if f is not TaskFormat.RETRIEVAL)})")
        for target in self.targets:
            extra = set(target.methods or ()) - set(self.methods)
            if extra:
                raise ValueError(f"target '{target.task}' names methods the grid does not train: "
                                 f"{', '.join(sorted(extra))} (grid methods: "
                                 f"{', '.join(self.methods)})")
            if target.seeds is not None and not target.seeds:
                raise ValueError(f"target '{target.task}' has an empty seeds list")
            stray = sorted(set(target.intermediates or ()) - set(self.intermediate))
            if stray:
                raise ValueError(f"target '{target.task}' stacks tasks that are not intermediate tasks: "
                                 f"{', '.join(stray)} (intermediate: {', '.join(self.intermediate)})")

    def setups_for(self, method: str) -> tuple[Setup, ...]:
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
    data = merge(data, parse_overrides(overrides))
    grid = build(GridSpec, data, source=str(path), lines=lines)
    named = [(("intermediate", f"[{i}]"), t) for i, t in enumerate(grid.intermediate)]
    named += [(("full_after", f"[{i}]"), t) for i, t in enumerate(grid.full_after)]
    for i, target in enumerate(grid.targets):
        named += [(("targets", f"[{i}]", key), getattr(target, key)) for key in ("task", "train_task")
                  if getattr(target, key) is not None]
        named += [(("targets", f"[{i}]", "intermediates", f"[{j}]"), t)
                  for j, t in enumerate(target.intermediates or ())]
    problems = [(f"{path}:{lines[key]}: " if key in lines else f"{path}: ")
                + f"unknown task '{name}' in '{dotted_path(key)}' (valid: {choices(TASKS)})" + did_you_mean(name, TASKS)
                for key, name in named if name not in TASKS]
    if problems:
        raise ConfigError(problems)
    _check_train(grid, path, lines)
    problems = [(f"{path}:{lines[key]}: " if key in lines else f"{path}: ") + message
                for key, message in expansion_problems(grid, setups_given="setups" in data)]
    if problems:
        raise ConfigError(problems)
    return grid


def _check_train(grid: GridSpec, path: Path, lines: dict) -> None:
    """Every train-settings layer of the file builds a TrainSpec (unknown keys and bad values: file:line), and every
    cell's settings resolve (a multitask adapter over families whose settings differ needs `multitask_train`)."""
    problems = []
    layers = [(("train",), grid.train, False), (("multitask_train",), grid.multitask_train, False)]
    layers += [(("train_by_format", f.value), o, False) for f, o in grid.train_by_format.items()]
    layers += [(("full_train_by_format", f.value), o, True) for f, o in grid.full_train_by_format.items()]
    for key, layer, full in layers:
        try:
            build(TrainSpec, merge(to_dict(PRESETS[grid.preset][2 if full else 1]), layer), source=str(path),
                  lines=lines, prefix=key)
        except ConfigError as err:
            problems += err.problems
    if problems:
        raise ConfigError(problems)
    try:
        cells(grid)
    except ConfigError as err:
        where = f"{path}:{lines[('intermediate',)]}: " if ("intermediate",) in lines else f"{path}: "
        raise ConfigError([where + p for p in err.problems]) from None


DEFAULT_SETUPS = GridSpec.__dataclass_fields__["setups"].default


def _fuses(method: str, members: int = 2) -> bool:
    """Whether the capability table lets a Fuse of `method` members train a `method` target."""
    from .composition import refusal

    return refusal(Block.FUSE, [method] * members, method) is None


def _no_cell(grid: GridSpec, method: str, setup: Setup) -> str | None:
    """Why `setup` makes no target cell with `method` (None: it makes them)."""
    count = len(grid.intermediate)
    if setup is Setup.FUSE and not _fuses(method):
        return "Fuse composes bottleneck adapters only"
    if setup in (Setup.FUSE, Setup.MULTITASK) and count < 2:
        return (f"{setup.value} needs at least two intermediate tasks (intermediate: "
                f"{', '.join(grid.intermediate) or 'none'})")
    if setup is Setup.STACK and count == 0:
        return "stack needs an intermediate task (intermediate is empty)"
    return None


def _reasons(grid: GridSpec, methods: list[str], setup: Setup) -> str:
    """Why `setup` makes no cell with any of `methods`, each reason once: 'for bottleneck and lora, ...'."""
    by_reason: dict[str, list[str]] = {}
    for method in dict.fromkeys(methods):
        by_reason.setdefault(_no_cell(grid, method, setup), []).append(method)
    return "; ".join(f"for {' and '.join(names)}, {reason}" for reason, names in by_reason.items())


def expansion_problems(grid: GridSpec, setups_given: bool = True) -> list[tuple[tuple[str, ...], str]]:
    """(key path, message) for every listed setting that makes no cell, so would silently run something
    else: a setup that expands to nothing (Fuse of LoRA adapters or of one task, multitask over one task,
    a setup no method of a target runs), full_after without a full fine-tune, single_seed or a target's
    intermediates that narrow nothing, settings on a retrieval target (evaluated, never trained).
    `setups_given`: False when `setups` is the default, which means every setup that applies."""
    problems: list[tuple[tuple[str, ...], str]] = []
    targets = [(i, t) for i, t in enumerate(grid.targets) if t.task in TASKS and get_task(t.task).trainable]
    pairs = [(t, m) for _, t in targets for m in t.methods or grid.methods]
    runs = {(id(t), m, s) for t, m in pairs for s in grid.setups_for(m)
            if (t.setups is None or s in t.setups) and _no_cell(grid, m, s) is None}
    if setups_given:
        for j, setup in enumerate(grid.setups):
            using = [(t, m) for t, m in pairs if m not in grid.method_setups and (t.setups is None or setup in t.setups)]
            if using and not any((id(t), m, setup) in runs for t, m in using):
                problems.append((("setups", f"[{j}]"), f"setups lists '{setup.value}', which makes no cell: "
                                 + _reasons(grid, [m for _, m in using], setup)))
    for method, listed in grid.method_setups.items():
        for j, setup in enumerate(listed):
            reason = _no_cell(grid, method, setup)
            if reason is not None:
                problems.append((("method_setups", method, f"[{j}]"),
                                 f"method_setups.{method} lists '{setup.value}', which makes no cell: {reason}"))
    for i, target in targets:
        methods = target.methods or grid.methods
        for j, setup in enumerate(target.setups or ()):
            if any((id(target), m, setup) in runs for m in methods):
                continue
            offered = [m for m in methods if setup in grid.setups_for(m)]
            reason = _reasons(grid, offered, setup) if offered else (
                "the grid's setups for its methods leave it out (" + ", ".join(
                    f"{m}: {', '.join(s.value for s in grid.setups_for(m))}" for m in methods) + ")")
            problems.append((("targets", f"[{i}]", "setups", f"[{j}]"),
                             f"target '{target.task}' lists setup '{setup.value}', which makes no cell: {reason}"))
        if target.intermediates is not None and not any((id(target), m, Setup.STACK) in runs for m in methods):
            problems.append((("targets", f"[{i}]", "intermediates"),
                             f"target '{target.task}' narrows its Stack cells to intermediates, but it runs no "
                             "stack setup"))
    for i, target in enumerate(grid.targets):
        if target.task not in TASKS or get_task(target.task).trainable:
            continue
        ignored = [name for name in ("train_task", "methods", "setups", "seeds", "full_finetune", "intermediates")
                   if getattr(target, name) is not None]
        ignored += [name for name, default in (("train_split", "train"), ("dev", True))
                    if getattr(target, name) != default]
        if ignored:
            problems.append((("targets", f"[{i}]", ignored[0]),
                             f"target '{target.task}' is a retrieval task (evaluated with the intermediate adapters, "
                             f"never trained): {', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} "
                             "not apply to it"))
    qa = [name for name in dict.fromkeys([*grid.intermediate, *grid.full_after, *(t.train_task or t.task for _, t in targets)])
          if name in TASKS and get_task(name).format is TaskFormat.QA]
    for message in dict.fromkeys(_window_problem(_train_spec(grid, full, grid.seeds[0], tasks=qa[:1]))
                                 for full in (False, True)):
        if qa and message is not None:  # every QA cell would fail on it
            key = ("train", "doc_stride") if "doc_stride" in grid.train else ("train", "max_length")
            problems.append((key, f"{message} (QA tasks of the grid: {', '.join(qa)})"))
    full = [t for _, t in targets if (grid.full_finetune if t.full_finetune is None else t.full_finetune)]
    if grid.full_after and not full:
        problems.append((("full_after",), "full_after trains full fine-tunes for the full fine-tune baseline, but "
                         "no target runs one (full_finetune is false)"))
    offered = {s for m in grid.methods for s in grid.setups_for(m)}
    for j, setup in enumerate(grid.single_seed):
        if setup not in offered:
            problems.append((("single_seed", f"[{j}]"), f"single_seed lists '{setup.value}', which no method of "
                             f"the grid runs"))
    return problems


def _window_problem(spec: TrainSpec) -> str | None:
    from .formats.qa import check_window_settings

    try:
        check_window_settings(spec.max_length, spec.doc_stride)
    except StepstoneError as err:
        return str(err)
    return None


def _train_spec(grid: GridSpec, full: bool, seed: int, dev: bool = True, tasks: tuple[str, ...] = ()) -> TrainSpec:
    """The training settings of a cell that trains `tasks`. Per task family, later layers win: the preset's recipe,
    the preset's settings for that family (FAMILIES), the grid's `train`, the grid's `train_by_format` (adapters) or
    `full_train_by_format` (full fine-tuning). A multitask cell takes what its families agree on, plus
    `multitask_train`, which must settle every key where they differ."""
    families = sorted({get_task(t).format for t in tasks}, key=lambda f: f.value) or [None]
    resolved = {f: _family_settings(grid, full, f) for f in families}
    data = dict(resolved[families[0]])
    if len(tasks) > 1:
        differ = sorted(k for k in data if len({repr(r.get(k)) for r in resolved.values()}) > 1
                        and k not in grid.multitask_train)
        if differ:
            detail = "; ".join(f"{k}: " + ", ".join(f"{f.value} {resolved[f][k]}" for f in families) for k in differ)
            raise ConfigError([f"the multitask adapter trains tasks of families whose training settings differ "
                               f"({detail}): set {', '.join(differ)} in multitask_train"])
        data = merge(data, grid.multitask_train)
    data.update(seed=seed, select_best=dev and data.get("select_best", True), dev=dev)
    return build(TrainSpec, data, source="grid train settings")


def _family_settings(grid: GridSpec, full: bool, family: TaskFormat | None) -> dict:
    preset = FAMILIES.get(grid.preset, {}).get(family, ({}, {}))[1 if full else 0]
    own = (grid.full_train_by_format if full else grid.train_by_format).get(family, {})
    return merge(merge(merge(to_dict(PRESETS[grid.preset][2 if full else 1]), preset), grid.train), own)


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
            name = zoo_name[(method, task)] = f"{method}-{task}"
            out.append(Cell(f"intermediate/{method}/{task}", "intermediate",
                            RunSpec(task=task, name=name, method=m,
                                    train=_train_spec(grid, False, first, task not in grid.no_dev, (task,)),
                                    train_splits=splits, **common),
                            {"task": task, "method": method, "composition": "intermediate", "seed": first}))
        if Setup.MULTITASK in wanted and len(grid.intermediate) > 1:
            name = zoo_name[(method, "multitask")] = f"{method}-multitask"
            out.append(Cell(f"intermediate/{method}/multitask", "intermediate",
                            RunSpec(task=grid.intermediate, name=name, method=m, train_splits=splits,
                                    train=_train_spec(grid, False, first, not grid.no_dev, grid.intermediate),
                                    **common),
                            {"task": "multitask", "method": method, "composition": "intermediate", "seed": first}))
    for task in grid.full_after:
        out.append(Cell(f"intermediate/full/{task}", "intermediate",
                        RunSpec(task=task, name=f"full-{task}", method=MethodSpec(kind="full"),
                                train=_train_spec(grid, True, first, task not in grid.no_dev, (task,)),
                                train_splits=splits, **common),
                        {"task": task, "method": "full", "composition": "intermediate", "seed": first}))
    for target in grid.targets:
        task = get_task(target.task)
        if not task.trainable:
            out.append(Cell(f"retrieval/{target.task}/backbone", "retrieval", None,
                            {"target": target.task, "method": None, "composition": "none"}, target))
            for (method, inter), name in zoo_name.items():
                out.append(Cell(f"retrieval/{target.task}/{method}/{inter}", "retrieval", None,
                                {"target": target.task, "method": method, "composition": "intermediate",
                                 "intermediate": inter}, target, evaluate_artifact=name))
            continue
        out.extend(_target_cells(grid, target, zoo_name, common))
    return out


def _target_cells(grid: GridSpec, target: TargetSpec, zoo_name: dict, common: dict) -> Iterator[Cell]:
    train_task = target.train_task or target.task
    dev = target.dev
    base = {"target": target.task, "train_task": train_task}
    trains = (train_task,)
    seeds = target.seeds or grid.seeds
    for method in target.methods or grid.methods:
        m = MethodSpec(kind=method)
        setups = [s for s in grid.setups_for(method) if target.setups is None or s in target.setups]
        for seed in seeds:
            def cell(setup: str, compose: str | None, inter: str | None = None, after: str | None = None) -> Cell:
                label = setup if inter is None else f"{setup}-{inter}"
                name = f"{target.task}-{method}-{label}-s{seed}"
                spec = RunSpec(task=train_task, name=name, method=m, train=_train_spec(grid, False, seed, dev, trains),
                               compose=parse(compose) if compose else None, train_split=target.train_split, **common)
                return Cell(f"target/{target.task}/{method}/{label}/seed{seed}", "target", spec,
                            {**base, "method": method, "composition": setup, "intermediate": inter, "seed": seed},
                            target, after=after)

            def wanted(setup: Setup) -> bool:
                return setup in setups and seed in grid.seeds_for(setup, target)
            if wanted(Setup.NONE):
                yield cell("none", None)
            if wanted(Setup.STACK):
                for inter in target.intermediates or grid.intermediate:
                    gate = None if seed == seeds[0] or grid.stack_all_seeds else f"best-stack/{target.task}/{method}"
                    yield cell("stack", f"Stack({zoo_name[(method, inter)]})", inter, after=gate)
            if wanted(Setup.FUSE) and len(grid.intermediate) > 1 and _fuses(method, len(grid.intermediate)):
                yield cell("fuse", f"Fuse({', '.join(zoo_name[(method, t)] for t in grid.intermediate)})")
            if wanted(Setup.MULTITASK) and (method, "multitask") in zoo_name:
                yield cell("multitask", f"Stack({zoo_name[(method, 'multitask')]})")
    full = MethodSpec(kind="full")
    full_finetune = grid.full_finetune if target.full_finetune is None else target.full_finetune
    for seed in seeds if full_finetune else ():
        name = f"{target.task}-full-s{seed}"
        yield Cell(f"target/{target.task}/full/full/seed{seed}", "target",
                   RunSpec(task=train_task, name=name, method=full, train=_train_spec(grid, True, seed, dev, trains),
                           train_split=target.train_split, **common),
                   {**base, "method": "full", "composition": "full", "seed": seed}, target)
        for inter in grid.full_after:
            yield Cell(f"target/{target.task}/full/full-after-{inter}/seed{seed}", "target",
                       RunSpec(task=train_task, name=f"{name}-after-{inter}", method=full,
                               train=_train_spec(grid, True, seed, dev, trains), train_split=target.train_split,
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
             limit: int | None = None, clock: Callable[[], float] = time.monotonic) -> GridResult:
    """Run (or continue) `grid` in `folder`. isolate: each training / evaluation in its own forked process
    (a crash cannot take the grid down, and peak memory is per cell). limit: stop after that many cells
    (tests use it to simulate an interruption). Progress notes (`progress.note`): cell k of n, elapsed,
    an estimate of the time left; `echo`: failures and did-not-learn warnings. One grid at a time per folder: a
    second is refused at once. SIGINT / SIGTERM stop the cell in progress as they stop `train` (its checkpoint
    saved, nothing recorded for it) and raise `Interrupted` naming the cell; running the grid again continues it."""
    from .locks import exclusive

    folder = Path(folder)
    problems = expansion_problems(grid, setups_given=grid.setups != DEFAULT_SETUPS)
    if problems:
        raise ConfigError([message for _, message in problems])
    every_cell = cells(grid)  # builds every cell's settings: a bad one fails before anything is written
    check_destination(folder / CELLS, "write")  # a file in the way or a read-only place: before any cell runs
    with interrupts.stopping(), exclusive([folder], f"grid folder '{folder}' is already being run"):
        try:
            return _run_grid(grid, folder, every_cell, progress, echo, isolate, limit, clock)
        except interrupts.Interrupted as stop:
            if stop.detail is not None:  # in or after a cell (_run_grid says which)
                raise
            raise interrupts.Interrupted(stop.signum, "between cells", resumable=True) from None


def _run_grid(grid: GridSpec, folder: Path, every_cell: list[Cell], progress: ProgressFactory,
              echo: Callable[[str], None], isolate: bool, limit: int | None, clock: Callable[[], float]) -> GridResult:
    _pin_spec(grid, folder)
    log = folder / CELLS
    done = load_records(log)
    ran = skipped = 0
    failed: list[str] = []
    todo, finished = planned(grid, done, every_cell)
    countdown = Countdown(todo if limit is None else min(todo, limit), clock())
    note(progress, f"grid {folder}: {countdown.total} cells to run, {finished} already done")
    for cell in every_cell:
        if done.get(cell.id, {}).get("status") == "ok":
            skipped += 1
            continue
        if cell.after is not None and _best_stack(done, cell) != cell.record["intermediate"]:
            continue
        if limit is not None and ran >= limit:
            break
        start = clock()
        note(progress, countdown.begin(cell.id, start))
        try:
            record = (_isolated if isolate else _run_cell)(grid, folder, cell, progress)
        except interrupts.Interrupted as stop:  # not recorded: the next run of the grid continues the cell
            raise interrupts.Interrupted(stop.signum, f"in cell {cell.id}" + (f" {stop.detail}" if stop.detail else ""),
                                         resumable=True) from None
        record = {"id": cell.id, "kind": cell.kind, "train_language": "en", **cell.record, **record,
                  "cell_seconds": round(clock() - start, 1)}  # wall time: training + evaluation
        countdown.finish()
        append_line(log, json.dumps(record, sort_keys=True) + "\n")
        done[cell.id] = record
        ran += 1
        if record["status"] != "ok":
            failed.append(cell.id)
            echo(f"  failed: {cell.id}: {record['error']}")
        warning = health.warning(cell.id, record.get("learning"))
        if warning is not None:
            echo(f"  {warning}")
        if interrupts.received() is not None:  # it came as an isolated cell finished: recorded, then stop
            raise interrupts.Interrupted(interrupts.received(), f"after cell {cell.id} finished", resumable=True)
    if ran:
        note(progress, countdown.summary(clock()))
    return GridResult(folder, ran, skipped, failed)


def planned(grid: GridSpec, done: dict[str, dict], every_cell: list[Cell] | None = None) -> tuple[int, int]:
    """(cells a run will start, cells already recorded ok). Of the best-stack seed cells (`after`), one
    per gate and seed runs: the best intermediate's, unless one of them is done already or the target
    has no dev score to pick by. `every_cell`: `cells(grid)` where the caller has built them already."""
    todo = finished = 0
    gates, gates_done = set(), set()
    for cell in cells(grid) if every_cell is None else every_cell:
        key = (cell.after, cell.record.get("seed"))
        if done.get(cell.id, {}).get("status") == "ok":
            finished += 1
            gates_done.add(key)
        elif cell.after is None:
            todo += 1
        elif cell.target is not None and cell.target.dev:
            gates.add(key)
    return todo + len(gates - gates_done), finished


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
            standalone = spec.compose is None and spec.method.registered.train_mode != "full"
            path = zoo.path(spec.run_name) if standalone else runs / spec.run_name
            if not ArtifactLayout(path).manifest.is_file():  # saved before an interruption: reuse it
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


def _costs(manifest: Manifest) -> dict:
    return {"trainable_parameters": manifest.trainable.parameters,
            "trainable_percent": manifest.trainable.percent_of_backbone,
            "weights_bytes": manifest.weights_bytes, "train_seconds": manifest.train_seconds,
            "peak_rss_mb": manifest.peak_rss_mb, "dev": manifest.metrics.main_dev,
            "artifact": manifest.name, "learning": manifest.learning}  # stepstone.health's verdict


def _languages(task: TaskSpec, split: Split, data_dir: Path | None) -> list[str]:
    """Every language of the benchmark's list for the task (as `stepstone evaluate` defaults to; not the further
    languages its source has, e.g. MLQA's language pairs) with data for `split` (`tasks.examples.missing_data`: a local file,
    another task's for a borrowed English split, or the hub)."""
    from .tasks.examples import missing_data

    found = [lang for lang in task.official_languages if missing_data(task, split, lang, data_dir) is None]
    if not found:
        raise StepstoneError(f"no {split.value} data for task '{task.name}' in any language under {data_dir}")
    return found
