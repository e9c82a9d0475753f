"""Issue 16's grid axes: sequential chains, the intermediate data-size axis, several backbones, and the checks of
those settings and of the perturbed / out-of-domain evaluations.

- `sequential: [[sst2, anli]]`: per adapter method, the chain's adapters are trained one after another, each
  continuing the one before (`stepstone train --init-from`): `bottleneck-sst2`, then `bottleneck-sst2-then-anli`;
  a target cell `sequential-sst2-then-anli` trains the target adapter on Stack(the chain's last adapter).
- `intermediate_sizes: [500, 2000]` (every intermediate task) or `{anli: [500, 2000]}` (per task): per adapter
  method, one more intermediate adapter per task and size, trained on that many English examples
  (`bottleneck-anli-n500`), and a target cell `stack-size-anli-n500` on Stack(it). The grid's ordinary Stack cell
  of the task is the full-size point.
- `backbones: [...]`: the whole grid on each backbone; cell ids, run and zoo names start with the backbone's slug.
Sequential and sized cells run for every trained target and adapter method that Stack composes, with the
target's seeds (`single_seed` may list `sequential` / `stack-size`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

from ..errors import StepstoneError
from ..specs import BackboneSpec, Block, Composition, MethodSpec, RunSpec
from ..tasks import Split, get_task
from .cells import Kind, Setup

THEN = "-then-"  # joins a chain's tasks into its label and zoo name: sst2-then-anli


def chain_label(chain: tuple[str, ...]) -> str:
    return THEN.join(chain)


def fit(name: str) -> str:
    """A run or zoo name within the 64 characters names may have: a long one (a chain of long task names, a
    backbone prefix) keeps its front and gets a digest of the whole, so distinct names stay distinct."""
    import hashlib

    if len(name) <= 64:
        return name
    return f"{name[:55].rstrip('-_')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def sizes_for(grid, task: str) -> tuple[int, ...]:
    """The sizes `task`'s sized intermediate adapters train on (none: the task has no sized adapters)."""
    sizes = grid.intermediate_sizes
    return tuple(sizes.get(task, ())) if isinstance(sizes, dict) else tuple(sizes)


def stacking_methods(grid) -> list[str]:
    """The grid's adapter methods Stack composes (the methods sequential and sized cells may have)."""
    from .grid import _refused

    return [m for m in grid.methods if _refused(Block.STACK, m) is None]


AXIS_KEYS = {Setup.SEQUENTIAL: "sequential chains", Setup.SIZE: "intermediate_sizes"}


def axis_methods(grid, setup: Setup) -> list[str]:
    """The methods of the grid's sequential (`setup` SEQUENTIAL) or sized (SIZE) cells: those Stack composes, less
    those `method_setups` names without listing the axis (`method_setups: {lora: [none, fuse]}` runs no LoRA chains
    or sizes; `{lora: [none, sequential]}` runs LoRA chains)."""
    return [m for m in stacking_methods(grid) if m not in grid.method_setups or setup in grid.method_setups[m]]


def runs_axis(grid, target, method: str, setup: Setup) -> bool:
    """Whether trained `target` has `setup` (SEQUENTIAL or SIZE) cells with `method`: the grid gives the axis, Stack
    composes the method, method_setups (where it names the method) and the target's setups (where given) list it."""
    from .grid import _no_cell

    return method in axis_methods(grid, setup) and method in (target.methods or grid.methods) and (
        target.setups is None or setup in target.setups) and _no_cell(grid, method, setup, target) is None


def _trained_targets(grid) -> list:
    from .grid import TASKS

    return [t for t in grid.targets if t.task in TASKS and get_task(t.task).trainable]


def _sized_tasks(grid, method: str) -> set[str]:
    """The tasks whose sized `method` adapters some target's stack-size cells stack."""
    return {task for t in _trained_targets(grid) if runs_axis(grid, t, method, Setup.SIZE)
            for task in t.intermediates or grid.intermediate if sizes_for(grid, task)}


def slug(backbone: BackboneSpec) -> str:
    """A backbone as a cell-id and zoo-name prefix: a hub id or local folder by its last part."""
    name = Path(backbone.name).name or backbone.name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "backbone"


# ---- cells -------------------------------------------------------------------------------------------------

def intermediate_cells(grid, zoo_name: dict, common: dict) -> list:
    """The chains' and the sizes' intermediate adapters that some target cell stacks (a chain's first task reuses
    the grid's own adapter of it where the grid trains one); fills `zoo_name`: (method, chain label or 'task@size')
    -> zoo entry."""
    from .grid import _cell, _train_spec

    out, first, splits = [], grid.seeds[0], grid.intermediate_splits
    chaining = [m for m in axis_methods(grid, Setup.SEQUENTIAL)
                if any(runs_axis(grid, t, m, Setup.SEQUENTIAL) for t in _trained_targets(grid))]
    sizing = {m: _sized_tasks(grid, m) for m in axis_methods(grid, Setup.SIZE)}
    for method in (m for m in stacking_methods(grid) if m in chaining or sizing.get(m)):
        m = MethodSpec(kind=method)

        def train(task: str, examples: int | None = None):
            spec = _train_spec(grid, False, first, task not in grid.no_dev, (task,), True)
            return spec if examples is None else dataclasses.replace(spec, max_train_examples=examples)

        for chain in grid.sequential if method in chaining else ():
            for end in range(1, len(chain) + 1):
                head, label = chain[:end], chain_label(chain[:end])
                key = (method, label)
                if key in zoo_name:  # the grid's own adapter of the task, or a prefix another chain shares
                    continue
                name = zoo_name[key] = fit(f"{method}-{label}")
                init = None if end == 1 else Path(zoo_name[(method, chain_label(head[:-1]))])  # under the zoo
                record = {"task": head[-1], "method": method, "composition": "intermediate", "seed": first}
                if end > 1:
                    record["chain"] = list(head)
                out.append(_cell(f"intermediate/{method}/{label}", Kind.INTERMEDIATE,
                                 RunSpec(task=head[-1], name=name, method=m, train=train(head[-1]),
                                         train_splits=splits, init_from=init, **common), record))
        for task in (t for t in grid.intermediate if t in sizing.get(method, ())):
            for size in sizes_for(grid, task):
                name = zoo_name[(method, f"{task}@{size}")] = f"{method}-{task}-n{size}"
                out.append(_cell(f"intermediate/{method}/{task}-n{size}", Kind.INTERMEDIATE,
                                 RunSpec(task=task, name=name, method=m, train=train(task, size), train_splits=splits,
                                         **common),
                                 {"task": task, "method": method, "composition": "intermediate", "seed": first,
                                  "intermediate_size": size}))
    return out


def target_cells(grid, target, zoo_name: dict, common: dict) -> Iterator:
    """A trained target's sequential and sized cells."""
    from .grid import _cell, _train_spec

    train_task = target.train_task or target.task
    for method in (m for m in target.methods or grid.methods if m in stacking_methods(grid)):
        def cell(setup: Setup, label: str, member: str, seed: int, **record):
            spec = RunSpec(task=train_task, name=fit(f"{target.task}-{method}-{label}-s{seed}"),
                           method=MethodSpec(kind=method), compose=Composition(Block.STACK, (member,)),
                           train_split=target.train_split,
                           train=_train_spec(grid, False, seed, target.dev, (train_task,)), **common)
            return _cell(f"target/{target.task}/{method}/{label}/seed{seed}", Kind.TARGET, spec,
                         {"target": target.task, "train_task": train_task, "method": method,
                          "composition": setup.value, **record, "seed": seed}, target)

        for chain in grid.sequential if runs_axis(grid, target, method, Setup.SEQUENTIAL) else ():
            label = chain_label(chain)
            for seed in grid.seeds_for(Setup.SEQUENTIAL, target):
                yield cell(Setup.SEQUENTIAL, f"sequential-{label}", zoo_name[(method, label)], seed,
                           intermediate=label, chain=list(chain))
        for task in target.intermediates or grid.intermediate if runs_axis(grid, target, method, Setup.SIZE) else ():
            for size in sizes_for(grid, task):
                for seed in grid.seeds_for(Setup.SIZE, target):
                    yield cell(Setup.SIZE, f"stack-size-{task}-n{size}", zoo_name[(method, f"{task}@{size}")], seed,
                               intermediate=task, intermediate_size=size)


def on_backbones(grid, build: Callable) -> list:
    """Every backbone's cells (`build`: the one-backbone planner), ids and names prefixed by the backbone's slug."""
    out = []
    for backbone in grid.backbones:
        one = dataclasses.replace(grid, backbone=backbone, backbones=())
        out.extend(_prefixed(c, slug(backbone)) for c in build(one))
    return out


def _prefixed(cell, prefix: str):
    """`cell` on its backbone's share of the grid folder: every id and name it holds or refers to, prefixed."""
    def name(value: str) -> str:
        return fit(f"{prefix}-{value}")

    spec = cell.spec
    if spec is not None:
        compose = spec.compose and dataclasses.replace(spec.compose, members=tuple(map(name, spec.compose.members)))
        init = spec.init_from if spec.init_from is None or spec.init_from.is_absolute() else Path(name(str(spec.init_from)))
        spec = dataclasses.replace(spec, name=name(spec.name), compose=compose, init_from=init)
    rank = cell.rank and dataclasses.replace(cell.rank, candidates=tuple(map(name, cell.rank.candidates)))
    return dataclasses.replace(
        cell, record=cell.record.updated(id=f"{prefix}/{cell.id}"), spec=spec, rank=rank, prefix=f"{prefix}/",
        after=cell.after and f"{prefix}/{cell.after}",
        evaluate_artifact=cell.evaluate_artifact and name(cell.evaluate_artifact))


# ---- checks ------------------------------------------------------------------------------------------------

def problems(grid) -> list[tuple[tuple[str, ...], str]]:
    """(key path, message) for every axis setting that is wrong or makes nothing."""
    from .grid import TASKS

    out: list[tuple[tuple[str, ...], str]] = []
    methods = stacking_methods(grid)
    for i, chain in enumerate(grid.sequential):
        key = ("sequential", f"[{i}]")
        if len(chain) < 2:
            out.append((key, f"a sequential chain needs at least two tasks (got {', '.join(chain) or 'none'}); a "
                             "single intermediate task is the stack setup"))
        if len(set(chain)) != len(chain):
            out.append((key, f"sequential chain {list(chain)} trains a task twice"))
        untrainable = [t for t in chain if t in TASKS and not get_task(t).trainable]
        if untrainable:
            out.append((key, f"sequential chain {list(chain)}: {', '.join(untrainable)} is a retrieval task, "
                             "which is not trained"))
        if list(chain) in [list(c) for c in grid.sequential[:i]]:
            out.append((key, f"sequential lists chain {list(chain)} twice"))
    if (grid.sequential or grid.intermediate_sizes) and not methods:
        out.append((("sequential",) if grid.sequential else ("intermediate_sizes",),
                    "sequential chains and sized intermediate adapters compose with Stack, which none of the grid's "
                    f"methods composes (methods: {', '.join(grid.methods)})"))
    elif methods:
        for setup, key, given in ((Setup.SEQUENTIAL, "sequential", grid.sequential),
                                  (Setup.SIZE, "intermediate_sizes", grid.intermediate_sizes)):
            if given and not axis_methods(grid, setup):
                out.append(((key,), f"{key} makes no cell: method_setups leaves '{setup.value}' out for every "
                            f"method Stack composes ({', '.join(methods)}); list it there"))
            elif given and not any(runs_axis(grid, t, m, setup) for t in _trained_targets(grid) for m in methods):
                out.append(((key,), f"{key} makes no cell: no trained target runs '{setup.value}' (a target that "
                            "lists setups runs it only where it lists it)"))
    sizes = grid.intermediate_sizes
    listed = sizes.items() if isinstance(sizes, dict) else [(None, sizes)]
    sizing = [t for t in _trained_targets(grid) if any(runs_axis(grid, t, m, Setup.SIZE) for m in methods)]
    for task, values in listed:
        key = ("intermediate_sizes",) + (() if task is None else (task,))
        if task is not None and task not in grid.intermediate:
            out.append((key, f"intermediate_sizes names '{task}', which is not an intermediate task "
                             f"(intermediate: {', '.join(grid.intermediate) or 'none'})"))
        elif task is not None and sizing and not any(task in (t.intermediates or grid.intermediate) for t in sizing):
            out.append((key, f"intermediate_sizes names '{task}', which no target that runs stack-size stacks "
                             f"(those targets: {', '.join(t.task for t in sizing)}; each stacks its intermediates)"))
        bad = [v for v in values if v < 1]
        if bad:
            out.append((key, f"intermediate_sizes must be at least 1 (got {', '.join(map(str, bad))})"))
        if len(set(values)) != len(values):
            out.append((key, f"intermediate_sizes lists a size twice ({', '.join(map(str, values))})"))
    if isinstance(sizes, dict) and any(not v for v in sizes.values()):
        out.append((("intermediate_sizes",), "intermediate_sizes has a task with an empty list: omit the task"))
    slugs = [slug(b) for b in grid.backbones]
    twice = sorted({s for s in slugs if slugs.count(s) > 1})
    if twice:
        out.append((("backbones",), f"backbones share a name ({', '.join(twice)}): their cells and zoo entries would "
                                    "collide; give each backbone a distinct folder or hub id"))
    out += _evaluation_problems(grid)
    return out


def _evaluation_problems(grid) -> list[tuple[tuple[str, ...], str]]:
    """perturb specs that do not parse, perturb settings with nothing to perturb, missing data files."""
    out: list[tuple[tuple[str, ...], str]] = []
    trained = _trained_targets(grid)
    if grid.perturb and not trained:
        out.append((("perturb",), "perturb evaluates trained target cells under noise, but the grid has no trained "
                                  "target (retrieval targets are not perturbed)"))
    if grid.perturb_seed != 0 and not grid.perturb:
        out.append((("perturb_seed",), "perturb_seed is set, but perturb lists no perturbation"))
    if grid.perturb_setups and not grid.perturb:
        out.append((("perturb_setups",), "perturb_setups is set, but perturb lists no perturbation"))
    if grid.perturb_seeds and not grid.perturb:
        out.append((("perturb_seeds",), "perturb_seeds is set, but perturb lists no perturbation"))
    seeds = {*grid.seeds, *(s for t in grid.targets for s in t.seeds or ())}
    idle_seeds = [str(s) for s in grid.perturb_seeds if s not in seeds]
    if idle_seeds:
        out.append((("perturb_seeds",), f"perturb_seeds names seeds no target cell runs: {', '.join(idle_seeds)} "
                                        f"(seeds: {', '.join(map(str, sorted(seeds)))})"))
    run = {*grid.setups, *(s for t in grid.targets for s in t.setups or ()),
           *(s for setups in grid.method_setups.values() for s in setups),
           *((Setup.SEQUENTIAL,) if grid.sequential and axis_methods(grid, Setup.SEQUENTIAL) else ()),
           *((Setup.SIZE,) if grid.intermediate_sizes and axis_methods(grid, Setup.SIZE) else ())}
    idle = [s.value for s in grid.perturb_setups if s not in run]
    if idle:
        out.append((("perturb_setups",), f"perturb_setups names setups no target cell runs: {', '.join(idle)} "
                                         f"(run: {', '.join(sorted(s.value for s in run))})"))
    for j, text in enumerate(grid.perturb):
        try:
            _parse_perturbation(text)
        except StepstoneError as err:
            out.append((("perturb", f"[{j}]"), str(err)))
    for i, target in enumerate(grid.targets):
        stems = [Path(p).stem for p in target.data_files or ()]
        if len(set(stems)) != len(stems):
            out.append((("targets", f"[{i}]", "data_files"), f"target '{target.task}': data_files share a file name "
                        f"({', '.join(sorted({s for s in stems if stems.count(s) > 1}))}): each is reported by it"))
        for j, path in enumerate(target.data_files or ()):
            if not Path(path).is_file():
                out.append((("targets", f"[{i}]", "data_files", f"[{j}]"),
                            f"target '{target.task}': data file '{path}' not found"))
    return out


def _parse_perturbation(text: str):
    from .. import perturb

    return perturb.parse(text)


def data_problems(grid) -> list[tuple[tuple[str, ...], str]]:
    """What reading the data finds: sizes larger than an intermediate task's local English training data (hub data
    is not counted here), and targets' data files that do not read as the task's native format."""
    from ..tasks.examples import load_examples, load_file, missing_data

    out = []
    for i, target in enumerate(grid.targets):
        for j, path in enumerate(target.data_files or ()):
            try:
                load_file(get_task(target.task), Split(target.split), Path(path), grid.eval_limit)
            except StepstoneError as err:
                out.append((("targets", f"[{i}]", "data_files", f"[{j}]"), f"target '{target.task}': {err}"))
    for task in grid.intermediate:
        wanted = sizes_for(grid, task)
        if not wanted:
            continue
        spec, split = get_task(task), Split(grid.intermediate_splits.get(task, "train"))
        if missing_data(spec, split, spec.train_language, grid.data_dir) is not None:
            continue
        try:
            have = len(load_examples(spec, split, spec.train_language, grid.data_dir, max(wanted)))
        except StepstoneError:  # hub data out of reach here (offline): its size is checked when the cell trains
            continue
        too_many = [n for n in wanted if n > have]
        if too_many:
            key = ("intermediate_sizes", task) if isinstance(grid.intermediate_sizes, dict) else ("intermediate_sizes",)
            out.append((key, f"intermediate_sizes: {', '.join(map(str, too_many))} examples of '{task}' asked for, "
                             f"but its {split.value} data has {have}"))
    return out
