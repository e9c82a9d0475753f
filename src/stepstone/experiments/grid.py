"""Transfer-experiment grids: intermediate tasks x target tasks x methods x compositions x seeds.

`run_grid` expands a GridSpec into cells, trains each intermediate adapter once (into the grid's zoo)
and reuses it in every cell that composes it, evaluates every target cell zero-shot, and appends one
JSON line per finished cell to GRID_DIR/cells.jsonl. Re-running continues: cells recorded as ok are
skipped, failed cells are retried, an artifact saved before an interruption is reused. A cell that
fails is recorded with its error and the grid goes on. `stepstone report GRID_DIR` reads cells.jsonl.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Iterator

from ..composition import refusal
from ..config import dotted_path, build, load_yaml, merge, parse_overrides, to_dict
from ..errors import ConfigError, StepstoneError, choices, did_you_mean
from ..methods import METHODS, Family, MethodName
from ..ranking.records import Estimator
from ..specs import BackboneSpec, Block, Composition, MethodSpec, RunSpec, TrainSpec
from ..tasks import TASKS, Split, TaskFormat, get_task
from .cells import BLOCK_MEMBERS, BLOCK_OF, DEFAULT_SETUPS, DEV, GRID_SETUPS, CellRecord, Kind, Members, Setup


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
    # per-target narrowing of the grid (None = the grid's): adapter methods, setups (the axes sequential and
    # stack-size too: a target that lists setups runs them only where it lists them), seeds (also the full
    # fine-tune's), whether the full fine-tune baseline runs
    methods: tuple[MethodName, ...] | None = None
    setups: tuple[Setup, ...] | None = None
    seeds: tuple[int, ...] | None = None
    full_finetune: bool | None = None
    # compose only these: a Stack cell of each, Fuse and Average over them (e.g. not the target's own training
    # task, whose intermediate adapter saw more of the target's English data than the target cells do)
    intermediates: tuple[str, ...] | None = None
    # out-of-domain files in the task's native format every target cell is also scored on (domain shift)
    data_files: tuple[Path, ...] | None = None
    rank: bool = True  # False: the grid's rank estimators skip this target (no rank cell; its best stack goes by dev)

    def to_config(self) -> dict:
        """Config form: data_files and rank only where set, so a target without them pins the text it pinned
        before they existed."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in data.items() if (k != "data_files" or v is not None) and (k != "rank" or not v)}

    def __post_init__(self):
        if self.data_files is not None and not self.data_files:
            raise ValueError(f"target '{self.task}' has an empty data_files list: omit it for none")
        if self.train_split not in ("train", "validation"):
            raise ValueError(f"target '{self.task}': train_split must be train or validation (got '{self.train_split}')")
        if self.split not in {s.value for s in Split}:
            raise ValueError(f"target '{self.task}': split must be one of: {choices(s.value for s in Split)} "
                             f"(got '{self.split}')")
        for name in ("methods", "intermediates"):  # an empty list would silently mean all of them
            if getattr(self, name) is not None and not getattr(self, name):
                what = "methods" if name == "methods" else "intermediate tasks"
                raise ValueError(f"target '{self.task}' has an empty {name} list: omit it for all of the grid's {what}")


PER_INTERMEDIATE = tuple(s for s, block in BLOCK_OF.items() if BLOCK_MEMBERS[block] is Members.EACH)  # Stack


@dataclass(frozen=True)
class GridSpec:
    """A grid. seeds apply to target cells; stack_all_seeds=False runs every Stack(intermediate) with the
    first seed and only the best intermediate with every seed: by stack_pick, "dev" (highest English dev score)
    or an estimator of `rank`. rank: estimators a rank cell runs per trained target and method before its Stack
    cells (stepstone.ranking), on rank_examples training examples (None: ranking's default), proxy for rank_steps
    steps (None: ranking's default)."""

    intermediate: tuple[str, ...]
    targets: tuple[TargetSpec, ...]
    preset: Preset = Preset.CPU_SMALL
    backbone: BackboneSpec | None = None
    data_dir: Path | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[MethodName, ...] = ("bottleneck", "lora")
    setups: tuple[Setup, ...] = DEFAULT_SETUPS  # cells.DEFAULT_SETUPS; any of cells.GRID_SETUPS may be listed
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
    # per intermediate task: TrainSpec overrides on top of those for the cells that train it as an intermediate
    # task (its adapter, its sized adapters, chain steps of it, its full_after fine-tune), e.g. its examples and
    # epochs; never a target's cells (a target trained on the same task keeps `train`); the multitask adapter takes
    # `multitask_train`
    intermediate_train: dict[str, dict] = field(default_factory=dict)
    multitask_train: dict = field(default_factory=dict)  # the multitask adapter's, where its families differ
    rank: tuple[Estimator, ...] = ()
    rank_examples: int | None = None
    rank_steps: int | None = None
    stack_pick: str = DEV
    # issue 16's axes (experiments/axes.py): chains of tasks trained one after another, each continuing the
    # adapter of the one before (the `sequential` setup); the training examples of sized intermediate adapters,
    # for every intermediate task or per task (the `stack-size` setup); several backbones, each running the whole
    # grid (instead of `backbone`); perturbations (stepstone.perturb) every trained target cell is also
    # evaluated under, at perturb_seed; perturb_setups / perturb_seeds: only the target cells of these setups / seeds
    # (default: every one)
    sequential: tuple[tuple[str, ...], ...] = ()
    intermediate_sizes: tuple[int, ...] | dict[str, tuple[int, ...]] = ()
    backbones: tuple[BackboneSpec, ...] = ()
    perturb: tuple[str, ...] = ()
    perturb_seed: int = 0
    perturb_setups: tuple[Setup, ...] = ()
    perturb_seeds: tuple[int, ...] = ()

    def to_config(self) -> dict:
        """Config form (`dump_yaml`: the pinned grid.yaml): the keys added since issue 15 only where they differ
        from their defaults, so a grid without them pins the text it pinned before they existed."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in data.items() if k not in OPTIONAL_KEYS or v != OPTIONAL_KEYS[k]}

    def __post_init__(self):
        if self.backbone is not None and self.backbones:
            raise ValueError("give backbone (one) or backbones (several), not both")
        if any(METHODS.get(m).family is Family.FULL for m in self.methods):
            raise ValueError("methods are adapter methods; the full fine-tune baseline is `full_finetune`")
        if not self.seeds or not self.targets:
            raise ValueError("a grid needs seeds and targets")
        axes = (Setup.SEQUENTIAL, Setup.SIZE)  # single_seed, method_setups and targets may list these too (axes.py)
        listed = [*self.setups, *(s for s in self.single_seed if s not in axes),
                  *(s for t in self.targets for s in t.setups or () if s not in axes),
                  *(s for setups in self.method_setups.values() for s in setups if s not in axes)]
        stray = sorted({s.value for s in listed} - {s.value for s in GRID_SETUPS})
        if stray:
            raise ValueError(f"setups are what a target cell composes (valid: {', '.join(s.value for s in GRID_SETUPS)}; "
                             f"got {', '.join(stray)}); the full fine-tune baseline is `full_finetune`")
        chained = tuple(t for chain in self.sequential for t in chain)  # trained as intermediate tasks too
        unknown = sorted(set(self.no_dev) - set(self.intermediate) - set(chained))
        if unknown:
            raise ValueError(f"no_dev names tasks that are not intermediate tasks: {', '.join(unknown)} "
                             f"(intermediate: {', '.join(dict.fromkeys(self.intermediate + chained))})")
        unknown = sorted(set(self.intermediate_splits) - set(self.intermediate) - set(self.full_after) - set(chained))
        if unknown:
            raise ValueError(f"intermediate_splits names tasks that are not intermediate tasks: {', '.join(unknown)} "
                             f"(intermediate: {', '.join(dict.fromkeys(self.intermediate + self.full_after + chained))})")
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

    def perturbs(self, setup: Setup | None, seed: int | None) -> bool:
        """Whether a trained target cell of `setup` and `seed` is also evaluated under the grid's perturbations."""
        return bool(self.perturb) and (not self.perturb_setups or setup in self.perturb_setups) and (
            not self.perturb_seeds or seed in self.perturb_seeds)

    @property
    def eval_limit(self) -> int | None:
        return self.eval_examples if self.eval_examples is not None else PRESETS[self.preset][3]


RANK_KEYS = {"rank": (), "rank_examples": None, "rank_steps": None, "stack_pick": DEV}  # issue 15's keys: defaults
AXES_KEYS = {"sequential": (), "intermediate_sizes": (), "backbones": (), "perturb": (), "perturb_seed": 0,
             "perturb_setups": (), "perturb_seeds": ()}  # issue 16's (perturb_setups / perturb_seeds: 18's)
STUDY_KEYS = {"intermediate_train": {}}  # issue 18's
OPTIONAL_KEYS = {**RANK_KEYS, **AXES_KEYS, **STUDY_KEYS}


@dataclass(frozen=True)
class RankJob:
    """What a rank cell hands `stepstone.ranking.rank` beyond the grid's own data_dir, zoo and backbone: the zoo
    entries it ranks, the examples its estimators read, proxy's steps and training settings (the first-seed Stack
    cell's)."""

    candidates: tuple[str, ...]
    examples: int
    steps: int
    train: TrainSpec


def rank_cell_id(target: str, method: str) -> str:
    return f"rank/{target}/{method}"


@dataclass(frozen=True)
class Cell:
    """A planned cell: its record so far (what it is; running it adds what it gave) and what running it takes."""

    record: CellRecord
    spec: RunSpec | None  # None: evaluation only
    target: TargetSpec | None = None
    evaluate_artifact: str | None = None  # retrieval cells: run/zoo entry to evaluate (None = bare backbone)
    after: str | None = None  # cell whose result decides whether this one runs (best-stack seeds)
    rank: RankJob | None = None  # rank cells: what they rank
    prefix: str = ""  # a grid of several backbones: the backbone's share of ids ('e5-small/'), else ''

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def kind(self) -> Kind:
        return self.record.kind


def _cell(id: str, kind: Kind, spec: RunSpec | None, record: dict, target: TargetSpec | None = None,
          **options) -> Cell:
    return Cell(CellRecord.of(id=id, kind=kind, train_language="en", **record), spec, target, **options)


def load_grid(path: Path, overrides: tuple[str, ...] = ()) -> GridSpec:
    """Read and check a grid file: keys, types, and every task name (file:line) before anything runs."""
    data, lines = load_yaml(path)
    data = merge(data, parse_overrides(overrides))
    data.pop("executor", None)  # how the cells run, not what they are: execution.load_executor reads it
    grid = build(GridSpec, data, source=str(path), lines=lines)
    named = [(("intermediate", f"[{i}]"), t) for i, t in enumerate(grid.intermediate)]
    named += [(("full_after", f"[{i}]"), t) for i, t in enumerate(grid.full_after)]
    named += [(("intermediate_train", t), t) for t in grid.intermediate_train]
    named += [(("sequential", f"[{i}]", f"[{j}]"), t) for i, chain in enumerate(grid.sequential)
              for j, t in enumerate(chain)]
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
    from .axes import data_problems

    found = expansion_problems(grid, setups_given="setups" in data)
    problems = [(f"{path}:{lines[key]}: " if key in lines else f"{path}: ") + message
                for key, message in found or data_problems(grid)]  # reading the data: only a sound grid's
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
    layers += [(("intermediate_train", t), o, False) for t, o in grid.intermediate_train.items()]
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




def _refused(block: Block, method: str) -> str | None:
    """Why `block` composes no adapters of `method` (composition's rules; None: it does), as the grid says it."""
    def refused(kind: str) -> bool:
        return refusal(block, (kind,) * (2 if BLOCK_MEMBERS[block] is Members.ALL else 1), kind) is not None

    if not refused(method):
        return None
    allowed = [k for k in METHODS.in_order() if METHODS.get(k).family is not Family.FULL and not refused(k)]
    listed = " and ".join(filter(None, (", ".join(allowed[:-1]), allowed[-1]))) if allowed else "no"
    return f"{block.value.capitalize()} composes {listed} adapters only"


def _no_cell(grid: GridSpec, method: str, setup: Setup, target: TargetSpec | None = None) -> str | None:
    """Why `setup` makes no target cell with `method` (for `target`: over its intermediates; None: it makes them)."""
    if setup in (Setup.SEQUENTIAL, Setup.SIZE):  # the axes: Stack of a chain's or a sized adapter
        from .axes import AXIS_KEYS

        reason = _refused(Block.STACK, method)
        given = grid.sequential if setup is Setup.SEQUENTIAL else grid.intermediate_sizes
        return reason or (None if given else f"{setup.value} needs {AXIS_KEYS[setup]} (the grid has none)")
    block = BLOCK_OF.get(setup)
    reason = None if block is None else _refused(block, method)
    if reason is not None:
        return reason
    members = grid.intermediate if setup is Setup.MULTITASK else composed(grid, target)
    what = "intermediate" if members is grid.intermediate else f"target '{target.task}' intermediates"
    if (setup is Setup.MULTITASK or block is not None and BLOCK_MEMBERS[block] is Members.ALL) and len(members) < 2:
        return f"{setup.value} needs at least two intermediate tasks ({what}: {', '.join(members) or 'none'})"
    if block is not None and not members:
        return f"{setup.value} needs an intermediate task (intermediate is empty)"
    return None


def composed(grid: GridSpec, target: TargetSpec | None) -> tuple[str, ...]:
    """The intermediate tasks a target's compositions take: each for Stack, all of them for Fuse and Average (its
    `intermediates`, else the grid's; the multitask adapter is trained on all of the grid's)."""
    return (target.intermediates if target is not None else None) or grid.intermediate


def _reasons(grid: GridSpec, pairs: list, setup: Setup) -> str:
    """Why `setup` makes no cell for any of `pairs` (target, method), each reason once: 'for bottleneck and lora,
    ...'."""
    by_reason: dict[str, list[str]] = {}
    for target, method in pairs:
        names = by_reason.setdefault(_no_cell(grid, method, setup, target), [])
        if method not in names:
            names.append(method)
    return "; ".join(f"for {' and '.join(names)}, {reason}" for reason, names in by_reason.items())


Problems = list[tuple[tuple[str, ...], str]]  # (key path in the grid file, message)


def expansion_problems(grid: GridSpec, setups_given: bool = True) -> Problems:
    """(key path, message) for every listed setting that makes no cell, so would silently run something
    else: a setup that expands to nothing (Fuse of LoRA adapters or of one task, multitask over one task,
    a setup no method of a target runs), full_after without a full fine-tune, single_seed or a target's
    intermediates that narrow nothing, settings on a retrieval target (evaluated, never trained), rank settings
    that rank nothing or pick by an estimator rank does not run.
    `setups_given`: False when `setups` is the default, which means every setup that applies."""
    targets = [(i, t) for i, t in enumerate(grid.targets) if t.task in TASKS and get_task(t.task).trainable]
    pairs = [(t, m) for _, t in targets for m in t.methods or grid.methods]
    from .axes import AXIS_KEYS, runs_axis, problems as axes_problems

    runs = {(id(t), m, s) for t, m in pairs for s in grid.setups_for(m)
            if s not in AXIS_KEYS and (t.setups is None or s in t.setups) and _no_cell(grid, m, s, t) is None}
    runs |= {(id(t), m, s) for t, m in pairs for s in AXIS_KEYS if runs_axis(grid, t, m, s)}

    return [*_setups_problems(grid, pairs, runs, setups_given), *_target_problems(grid, targets, runs),
            *_retrieval_problems(grid), *_settings_problems(grid, targets), *_rank_problems(grid, runs),
            *axes_problems(grid)]


def _setups_problems(grid: GridSpec, pairs: list, runs: set, setups_given: bool) -> Problems:
    """`setups` (where given) and `method_setups` entries that make no cell."""
    problems: Problems = []
    for j, setup in enumerate(grid.setups if setups_given else ()):
        using = [(t, m) for t, m in pairs if m not in grid.method_setups and (t.setups is None or setup in t.setups)]
        if using and not any((id(t), m, setup) in runs for t, m in using):
            problems.append((("setups", f"[{j}]"), f"setups lists '{setup.value}', which makes no cell: "
                             + _reasons(grid, using, setup)))
    for method, listed in grid.method_setups.items():
        for j, setup in enumerate(listed):
            reason = _no_cell(grid, method, setup)
            if reason is not None:
                problems.append((("method_setups", method, f"[{j}]"),
                                 f"method_setups.{method} lists '{setup.value}', which makes no cell: {reason}"))
    return problems


def _target_problems(grid: GridSpec, targets: list, runs: set) -> Problems:
    """A trained target's `setups` and `intermediates` that make no cell, `rank: false` that skips nothing or
    leaves its best stack without the estimator stack_pick picks by."""
    from .axes import AXIS_KEYS, axis_methods, stacking_methods

    problems: Problems = []
    for i, target in targets:
        methods = target.methods or grid.methods
        for j, setup in enumerate(target.setups or ()):
            if any((id(target), m, setup) in runs for m in methods):
                continue
            offered = [m for m in methods if setup in grid.setups_for(m)] if setup not in AXIS_KEYS else [
                m for m in methods if m in axis_methods(grid, setup) or m not in stacking_methods(grid)]
            reason = _reasons(grid, [(target, m) for m in offered], setup) if offered else (
                "the grid's setups for its methods leave it out (" + ", ".join(
                    f"{m}: {', '.join(s.value for s in grid.setups_for(m))}" for m in methods) + ")")
            problems.append((("targets", f"[{i}]", "setups", f"[{j}]"),
                             f"target '{target.task}' lists setup '{setup.value}', which makes no cell: {reason}"))
        if target.intermediates is not None and not any((id(target), m, s) in runs for m in methods
                                                        for s in BLOCK_OF):
            *rest, last = [s.value for s in BLOCK_OF]
            problems.append((("targets", f"[{i}]", "intermediates"),
                             f"target '{target.task}' narrows its compositions to intermediates, but it runs no "
                             f"{' or '.join(filter(None, (', '.join(rest), last)))} setup"))
        if not target.rank and not grid.rank:
            problems.append((("targets", f"[{i}]", "rank"), f"target '{target.task}' sets rank: false, but the "
                             "grid ranks nothing (rank lists no estimator)"))
        elif not target.rank and grid.stack_pick != DEV:
            problems.append((("targets", f"[{i}]", "rank"), f"target '{target.task}' sets rank: false, but "
                             f"stack_pick '{grid.stack_pick}' picks its best stack from its rank cell (valid with "
                             "rank: false: stack_pick: dev)"))
    return problems


def _retrieval_problems(grid: GridSpec) -> Problems:
    """Training settings on a retrieval target, which is evaluated, never trained."""
    problems: Problems = []
    for i, target in enumerate(grid.targets):
        if target.task not in TASKS or get_task(target.task).trainable:
            continue
        ignored = [name for name in ("train_task", "methods", "setups", "seeds", "full_finetune", "intermediates",
                                     "data_files")
                   if getattr(target, name) is not None]
        ignored += [name for name, default in (("train_split", "train"), ("dev", True), ("rank", True))
                    if getattr(target, name) != default]
        if ignored:
            problems.append((("targets", f"[{i}]", ignored[0]),
                             f"target '{target.task}' is a retrieval task (evaluated with the intermediate adapters, "
                             f"never trained): {', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} "
                             "not apply to it"))
    return problems


def _settings_problems(grid: GridSpec, targets: list) -> Problems:
    """QA window settings every QA cell would fail on; full_after and single_seed entries that narrow nothing."""
    problems: Problems = []
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
    from .axes import axis_methods

    offered |= {Setup.SEQUENTIAL} if grid.sequential and axis_methods(grid, Setup.SEQUENTIAL) else set()
    offered |= {Setup.SIZE} if grid.intermediate_sizes and axis_methods(grid, Setup.SIZE) else set()
    trained = {*grid.intermediate, *grid.full_after, *(t for chain in grid.sequential for t in chain)}
    for task in grid.intermediate_train:
        if task in TASKS and task not in trained:
            problems.append((("intermediate_train", task), f"intermediate_train names '{task}', which the grid does "
                             f"not train as an intermediate task (intermediate: {', '.join(sorted(trained))})"))
    for j, setup in enumerate(grid.single_seed):
        if setup not in offered:
            problems.append((("single_seed", f"[{j}]"), f"single_seed lists '{setup.value}', which no method of "
                             f"the grid runs"))
    return problems


def _rank_problems(grid: GridSpec, runs: set) -> Problems:
    """`rank` without a Stack cell to rank for, a `stack_pick` that is not dev or one of rank's estimators (or that
    picks nothing: every Stack gets every seed), counts below 1 and rank settings that would do nothing."""
    problems: Problems = []
    listed = [e.value for e in grid.rank]
    if grid.rank and not any(s in PER_INTERMEDIATE for _, _, s in runs):
        problems.append((("rank",), "rank scores the intermediate adapters of a trained target's stack cells, but "
                         "no target runs a stack setup"))
    if grid.stack_pick != DEV and grid.stack_pick not in listed:
        valid = [DEV, *listed]
        problems.append((("stack_pick",), f"stack_pick '{grid.stack_pick}' is not dev or an estimator rank runs "
                         f"(valid: {', '.join(valid)})" + did_you_mean(grid.stack_pick, valid)))
    elif grid.stack_pick != DEV and grid.stack_all_seeds:
        problems.append((("stack_pick",), "stack_pick picks the stack that gets every seed, but stack_all_seeds "
                         "is true (every stack gets every seed)"))
    for name in ("rank_examples", "rank_steps"):
        value = getattr(grid, name)
        if value is not None and value < 1:
            problems.append(((name,), f"{name} must be at least 1 (got {value})"))
        elif value is not None and not grid.rank:
            problems.append(((name,), f"{name} is set, but rank lists no estimators"))
    if grid.rank and (grid.rank_steps or 0) >= 1 and Estimator.PROXY not in grid.rank:
        problems.append((("rank_steps",), f"rank_steps are proxy's training steps, but rank does not run proxy "
                         f"(rank: {', '.join(listed)})"))
    return problems


def _window_problem(spec: TrainSpec) -> str | None:
    from ..formats.qa import check_window_settings

    try:
        check_window_settings(spec.max_length, spec.doc_stride)
    except StepstoneError as err:
        return str(err)
    return None


def _train_spec(grid: GridSpec, full: bool, seed: int, dev: bool = True, tasks: tuple[str, ...] = (),
                intermediate: bool = False) -> TrainSpec:
    """The training settings of a cell that trains `tasks`. Per task family, later layers win: the preset's recipe,
    the preset's settings for that family (FAMILIES), the grid's `train`, the grid's `train_by_format` (adapters) or
    `full_train_by_format` (full fine-tuning), then, for a cell training one task as an `intermediate` task, the
    grid's `intermediate_train` for it. A multitask cell takes what its families agree on, plus `multitask_train`,
    which must settle every key where they differ."""
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
    elif intermediate and tasks:
        data = merge(data, grid.intermediate_train.get(tasks[0], {}))
    data.update(seed=seed, select_best=dev and data.get("select_best", True), dev=dev)
    return build(TrainSpec, data, source="grid train settings")


def _family_settings(grid: GridSpec, full: bool, family: TaskFormat | None) -> dict:
    preset = FAMILIES.get(grid.preset, {}).get(family, ({}, {}))[1 if full else 0]
    own = (grid.full_train_by_format if full else grid.train_by_format).get(family, {})
    return merge(merge(merge(to_dict(PRESETS[grid.preset][2 if full else 1]), preset), grid.train), own)


def _backbone(grid: GridSpec) -> BackboneSpec:
    return grid.backbone or BackboneSpec(PRESETS[grid.preset][0])


def cells(grid: GridSpec) -> list[Cell]:
    """Every cell, in an order where what a cell composes is trained before it. Every record names its backbone."""
    from . import axes

    if grid.backbones:
        return axes.on_backbones(grid, cells)
    backbone, first = _backbone(grid), grid.seeds[0]
    common = dict(backbone=backbone, data_dir=grid.data_dir)
    zoo_name: dict[tuple[str, str], str] = {}
    out = _intermediate_cells(grid, zoo_name, common)
    out += axes.intermediate_cells(grid, zoo_name, common)
    for task in grid.full_after:
        out.append(_cell(f"intermediate/full/{task}", Kind.INTERMEDIATE,
                         RunSpec(task=task, name=f"full-{task}", method=MethodSpec(kind="full"),
                                 train=_train_spec(grid, True, first, task not in grid.no_dev, (task,), True),
                                 train_splits=grid.intermediate_splits, **common),
                         {"task": task, "method": "full", "composition": "intermediate", "seed": first}))
    for target in grid.targets:
        task = get_task(target.task)
        if not task.trainable:
            out.append(_cell(f"retrieval/{target.task}/backbone", Kind.RETRIEVAL, None,
                             {"target": target.task, "method": None, "composition": "none"}, target))
            for (method, inter), name in zoo_name.items():
                out.append(_cell(f"retrieval/{target.task}/{method}/{inter}", Kind.RETRIEVAL, None,
                                 {"target": target.task, "method": method, "composition": "intermediate",
                                  "intermediate": inter}, target, evaluate_artifact=name))
            continue
        out.extend(_target_cells(grid, target, zoo_name, common))
        out.extend(axes.target_cells(grid, target, zoo_name, common))
    return [dataclasses.replace(c, record=c.record.updated(backbone=backbone.name)) for c in out]


def _composed_tasks(grid: GridSpec, method: str) -> set[str]:
    """The intermediate tasks some cell composes `method` adapters of: a trained target's Stack, Fuse and Average
    cells take its intermediates; a retrieval target evaluates every intermediate adapter."""
    tasks: set[str] = set()
    blocks = [s for s in grid.setups_for(method) if s in BLOCK_OF]
    for target in grid.targets:
        if target.task in TASKS and not get_task(target.task).trainable:
            tasks |= set(grid.intermediate) if blocks else set()
        elif method in (target.methods or grid.methods) and any(
                (target.setups is None or s in target.setups) and _no_cell(grid, method, s, target) is None
                for s in blocks):
            tasks |= set(composed(grid, target))
    return tasks


def _intermediate_cells(grid: GridSpec, zoo_name: dict, common: dict) -> list[Cell]:
    """The intermediate adapters the grid's compositions need, one per method and task some cell composes (+ the
    multitask one); fills `zoo_name`: (method, task or 'multitask') -> zoo entry."""
    out: list[Cell] = []
    first, splits = grid.seeds[0], grid.intermediate_splits
    for method in grid.methods:
        m = MethodSpec(kind=method)
        wanted, needed = set(grid.setups_for(method)), _composed_tasks(grid, method)
        for task in (t for t in grid.intermediate if t in needed):
            name = zoo_name[(method, task)] = f"{method}-{task}"
            out.append(_cell(f"intermediate/{method}/{task}", Kind.INTERMEDIATE,
                             RunSpec(task=task, name=name, method=m,
                                     train=_train_spec(grid, False, first, task not in grid.no_dev, (task,), True),
                                     train_splits=splits, **common),
                             {"task": task, "method": method, "composition": "intermediate", "seed": first}))
        if Setup.MULTITASK in wanted and len(grid.intermediate) > 1:
            name = zoo_name[(method, "multitask")] = f"{method}-multitask"
            out.append(_cell(f"intermediate/{method}/multitask", Kind.INTERMEDIATE,
                             RunSpec(task=grid.intermediate, name=name, method=m, train_splits=splits,
                                     train=_train_spec(grid, False, first, not grid.no_dev, grid.intermediate),
                                     **common),
                             {"task": "multitask", "method": method, "composition": "intermediate",
                              "seed": first}))
    return out


def _target_cells(grid: GridSpec, target: TargetSpec, zoo_name: dict, common: dict) -> Iterator[Cell]:
    train_task = target.train_task or target.task
    base = {"target": target.task, "train_task": train_task}
    seeds = target.seeds or grid.seeds
    for method in target.methods or grid.methods:
        setups = [s for s in grid.setups_for(method) if target.setups is None or s in target.setups]
        if grid.rank and target.rank and any(s in PER_INTERMEDIATE and _no_cell(grid, method, s, target) is None
                                             for s in setups):
            yield _rank_cell(grid, target, method, zoo_name)
        for seed in seeds:
            def cell(setup: Setup, compose: Composition | None, inter: str | None = None,
                     after: str | None = None) -> Cell:
                label = setup.value if inter is None else f"{setup.value}-{inter}"
                spec = RunSpec(task=train_task, name=f"{target.task}-{method}-{label}-s{seed}",
                               method=MethodSpec(kind=method), compose=compose, train_split=target.train_split,
                               train=_train_spec(grid, False, seed, target.dev, (train_task,)), **common)
                return _cell(f"target/{target.task}/{method}/{label}/seed{seed}", Kind.TARGET, spec,
                             {**base, "method": method, "composition": setup.value, "intermediate": inter,
                              "seed": seed}, target, after=after)

            wanted = [s for s in setups if seed in grid.seeds_for(s, target)
                      and _no_cell(grid, method, s, target) is None]
            if Setup.NONE in wanted:
                yield cell(Setup.NONE, None)
            for setup in (s for s in BLOCK_OF if s in wanted):
                block = BLOCK_OF[setup]
                if BLOCK_MEMBERS[block] is Members.ALL:
                    yield cell(setup, Composition(block, tuple(zoo_name[(method, t)] for t in composed(grid, target))))
                    continue
                for inter in composed(grid, target):  # the best one gets every seed
                    gate = None if seed == seeds[0] or grid.stack_all_seeds else \
                        f"best-{setup.value}/{target.task}/{method}"
                    yield cell(setup, Composition(block, (zoo_name[(method, inter)],)), inter, after=gate)
            if Setup.MULTITASK in wanted and (method, "multitask") in zoo_name:
                yield cell(Setup.MULTITASK, Composition(Block.STACK, (zoo_name[(method, "multitask")],)))
    yield from _full_cells(grid, target, common)


def _rank_cell(grid: GridSpec, target: TargetSpec, method: str, zoo_name: dict) -> Cell:
    """The rank cell of a target and method: ranks the intermediate adapters its Stack cells compose, on the
    examples and with the settings its first-seed Stack cell trains with."""
    from ..ranking.run import DEFAULT_EXAMPLES, DEFAULT_STEPS

    train_task, first = target.train_task or target.task, (target.seeds or grid.seeds)[0]
    train = _train_spec(grid, False, first, target.dev, (train_task,))
    examples = grid.rank_examples or DEFAULT_EXAMPLES
    if train.max_train_examples is not None:  # the estimators read what the target cells train on, no more
        examples = min(examples, train.max_train_examples)
    job = RankJob(tuple(zoo_name[(method, t)] for t in composed(grid, target)), examples,
                  grid.rank_steps or DEFAULT_STEPS, train)
    return _cell(rank_cell_id(target.task, method), Kind.RANK, None,
                 {"target": target.task, "train_task": train_task, "method": method, "seed": first,
                  "stack_pick": grid.stack_pick}, target, rank=job)


def _full_cells(grid: GridSpec, target: TargetSpec, common: dict) -> Iterator[Cell]:
    """The full fine-tune baseline of a target, and the paper's full intermediate -> target runs."""
    train_task = target.train_task or target.task
    base = {"target": target.task, "train_task": train_task}
    full = MethodSpec(kind="full")
    full_finetune = grid.full_finetune if target.full_finetune is None else target.full_finetune
    for seed in (target.seeds or grid.seeds) if full_finetune else ():
        name = f"{target.task}-full-s{seed}"
        train = _train_spec(grid, True, seed, target.dev, (train_task,))
        yield _cell(f"target/{target.task}/full/full/seed{seed}", Kind.TARGET,
                    RunSpec(task=train_task, name=name, method=full, train=train, train_split=target.train_split,
                            **common),
                    {**base, "method": "full", "composition": "full", "seed": seed}, target)
        for inter in grid.full_after:
            yield _cell(f"target/{target.task}/full/full-after-{inter}/seed{seed}", Kind.TARGET,
                        RunSpec(task=train_task, name=f"{name}-after-{inter}", method=full, train=train,
                                train_split=target.train_split, init_from=Path(f"full-{inter}"),
                                **common),  # under the grid's runs/
                        {**base, "method": "full", "composition": "full-after-intermediate", "intermediate": inter,
                         "seed": seed}, target)
