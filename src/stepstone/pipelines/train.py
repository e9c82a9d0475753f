"""Train a zoo adapter or a composed / fully fine-tuned run, as named steps: plan (everything checkable
before anything is loaded or written) -> load data -> build the model -> encode -> train -> save.

A `Plan` (frozen) is handed from step to step. A composition's own trained layer (AdapterFusion: its
`composition.LAYERS` entry) is added, activated, trained and saved through that entry, so no step here
knows one block from another.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .. import composition as comp
from .. import health, interrupts, methods, provenance, tokenized
from ..artifacts import OUTPUTS, SaveError, atomic_dir, check_destination
from ..backbone import Backbone, load_backbone, place
from ..checkpoint import SUFFIX as CHECKPOINT_SUFFIX
from ..checkpoint import Checkpoints
from ..config import dump_yaml, to_dict
from ..distributed import launched, processes
from ..errors import StepstoneError
from ..formats import handler_for
from ..formats.qa import check_window_settings
from ..integrity import check_artifact, check_backbone, load_full
from ..manifest import (ArtifactLayout, BackboneRecord, CompositionRecord, Kind, Manifest, MethodRecord,
                        TaskRecord, TrainableRecord, chain_of, head_name, read_manifest, write_manifest)
from ..progress import ProgressFactory, silent
from ..specs import MethodSpec, RunSpec, TrainSpec
from ..tasks import Split, TaskFormat, TaskSpec, get_task
from ..tasks.examples import load_examples
from ..training.frozen import one_process_cache
from ..training import (MODES, Mode, TaskData, TrainingMode, TrainResult, Trainable, set_trainable, train,
                        trainable_names)
from ..zoo import Entry, Zoo
from .spec import check_same_backbone, set_threads


@dataclass(frozen=True)
class Outcome:
    """A finished training: where it was saved, its manifest, and what was trained."""

    path: Path
    manifest: Manifest
    trainable: Trainable
    result: TrainResult
    primary: bool = True  # False in the other processes of a multi-process run (they print nothing)


@dataclass(frozen=True)
class Plan:
    """What a run will do, decided and checked before anything is loaded. `spec` has its train settings
    resolved; `mode` is the composition layer's for a composed run whose semantics trains one."""

    spec: RunSpec
    tasks: tuple[TaskSpec, ...]
    mode: TrainingMode
    standalone: bool  # a zoo adapter; else a run folder under runs_dir
    destination: Path
    runs_dir: Path
    checkpoints: Checkpoints
    resume: bool
    trackers: tuple[Any, ...] = ()  # tracking.Tracker values
    members: tuple[Entry, ...] = ()
    semantics: comp.Semantics | None = None
    init: Manifest | None = None  # init_from's manifest
    init_path: Path | None = None  # init_from's folder (resolve_init)

    @property
    def name(self) -> str:
        return self.spec.run_name

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(self.spec.compose.members) if self.spec.compose is not None else ()

    @property
    def layer(self) -> comp.TrainedLayer | None:
        return comp.trained_layer(self.semantics)


@dataclass(frozen=True)
class RunData:
    """The examples a run trains and selects on, per task (open label sets derived from the training data),
    where they came from, and each task's head name."""

    tasks: tuple[TaskSpec, ...]
    examples: dict[str, tuple[list[dict], list[dict]]]  # task -> (train, dev)
    sources: dict[str, dict]
    heads: dict[str, str]


def mode_of(spec: RunSpec, semantics: comp.Semantics | None = None) -> TrainingMode:
    """The training mode: the composition layer's when the run's semantics trains one (composition.LAYERS),
    else the method's own."""
    return MODES.get(comp.training_mode(semantics, spec.method.kind))


def checkpoints_of(spec: RunSpec, runs_dir: Path) -> Checkpoints:
    """The checkpoint folder of a run (`runs_dir/<name>.checkpoint`: run names hold no '.', so it never
    clashes with a run) for a spec whose train settings are resolved."""
    return Checkpoints(Path(runs_dir) / f"{spec.run_name}{CHECKPOINT_SUFFIX}", spec.train.checkpoint_every,
                       to_dict(spec))


def train_run(spec: RunSpec, *, zoo: Zoo | None = None, runs_dir: Path = Path("runs"),
              progress: ProgressFactory = silent, tensorboard: bool = False, resume: bool = False,
              log: Sequence[str] = ()) -> Outcome:
    """Train `spec`. A standalone adapter goes to the zoo; a composed or full fine-tune run goes to
    `runs_dir/<name>`. Every artifact holds train_log.jsonl (loss and learning rate per step, dev
    metrics per epoch); `log` also sends them live to trackers (`tracking.Tracker`: tensorboard under
    `runs_dir/tensorboard/<name>`, wandb, mlflow; `tensorboard=True` is `log=["tensorboard"]`).
    Checkpoints go to `runs_dir/<name>.checkpoint` every `train.checkpoint_every` steps; `resume`
    continues from the latest (the same settings and inputs required). Returns where it went and what it
    measured. A second process training the same run is refused at once (locks.py). SIGINT / SIGTERM stop
    training after the optimizer step in progress, save a checkpoint there and raise `Interrupted`;
    anywhere else they raise it at once, after which nothing is left half-written (interrupts.py)."""
    from .. import tracking

    with interrupts.stopping(), ExitStack() as hold:
        try:
            trackers = (*log, *([tracking.Tracker.TENSORBOARD] if tensorboard else []))
            return _train_run(spec, zoo or Zoo(), Path(runs_dir), progress, trackers, resume, hold)
        except interrupts.Interrupted as stop:
            if stop.detail is not None:
                raise
            checkpoints = checkpoints_of(replace(spec, train=spec.train.resolved(spec.method.kind)), runs_dir)
            raise interrupts.Interrupted(stop.signum, f"before the run was saved: {checkpoints.describe_latest()}",
                                         checkpoints.latest() is not None, processes().primary) from None


def _train_run(spec: RunSpec, zoo: Zoo, runs_dir: Path, progress: ProgressFactory, trackers: Sequence[str],
               resume: bool, hold: ExitStack) -> Outcome:
    """train_run's steps; `hold` (an ExitStack) holds the run's lock until train_run returns."""
    plan = plan_run(spec, zoo, runs_dir, trackers, resume, hold)
    set_threads(plan.spec.train.threads)
    data = load_data(plan)
    if not processes().primary:  # under `accelerate launch` the first process reports progress
        progress = silent
    backbone, trainable = build_model(plan, data, progress)
    parts = encode(plan, data, backbone, progress)
    result = fit(plan, backbone, parts, trainable, progress)
    hold.enter_context(interrupts.deferred())  # the save and the checkpoint clean-up are not cut short
    return save(plan, backbone.model, describe_run(plan, data, backbone, parts, trainable, result), result,
                trainable, progress)


# ------------------------------------------------------------------------------------------------ plan
def plan_run(spec: RunSpec, zoo: Zoo, runs_dir: Path, trackers: Sequence[str], resume: bool,
             hold: ExitStack) -> Plan:
    """Check everything that can be checked without loading a model, in this order (tests pin which error
    comes first): trackers, tasks and settings; the destination (writable, locked, free); the members and
    their composition; init_from (chains.py); the checkpoints a resume continues from."""
    from .. import tracking

    chosen = tracking.parse(trackers)
    tracking.check(chosen)
    plan = _settings(spec, zoo, runs_dir, chosen, resume)
    _claim_destination(plan, hold)
    plan = _with_init(_with_members(plan, zoo), zoo)
    checkpoints = plan.checkpoints
    checkpoints.check(resume)
    checkpoints.expect("members", {e.name: {"files": e.manifest.files} for e in plan.members}, resume)
    init = plan.init
    checkpoints.expect("init_from", None if init is None else {"path": str(plan.init_path), "files": init.files},
                       resume)
    return plan


def destination_of(spec: RunSpec, zoo: Zoo, runs_dir: Path) -> tuple[bool, Path]:
    """(standalone, where `spec` is saved): a standalone adapter (no composition, not a full fine-tune) is a zoo
    entry; a composed or full fine-tune run is `runs_dir/<name>`. The one rule: the grid finds artifacts by it."""
    standalone = spec.compose is None and mode_of(spec) is not Mode.FULL
    return standalone, (zoo.path(spec.run_name) if standalone else Path(runs_dir) / spec.run_name)


def _settings(spec: RunSpec, zoo: Zoo, runs_dir: Path, trackers: tuple, resume: bool) -> Plan:
    """The tasks, the mode, where the run goes and its resolved train settings: settings errors come before
    any filesystem work (the lock, leftover clean-up)."""
    tasks = tuple(get_task(t) for t in spec.task)
    untrainable = [t.name for t in tasks if not t.trainable]
    if untrainable:
        raise StepstoneError(f"task(s) {', '.join(untrainable)} are evaluation-only (retrieval): nothing to train")
    mode = mode_of(spec)  # the method's; a composed run's follows from its semantics (_with_members)
    standalone, destination = destination_of(spec, zoo, runs_dir)
    spec = replace(spec, train=spec.train.resolved(spec.method.kind))
    if any(t.format is TaskFormat.QA for t in tasks):  # only QA has windows: doc_stride means nothing elsewhere
        check_window_settings(spec.train.max_length, spec.train.doc_stride)
    if spec.train.cache_frozen_layers and launched():  # the loop checks again, on the processes it trains with
        raise one_process_cache(int(os.environ["WORLD_SIZE"]))
    return Plan(spec, tasks, mode, standalone, destination, runs_dir, checkpoints_of(spec, runs_dir), resume,
                trackers)


def _claim_destination(plan: Plan, hold: ExitStack) -> None:
    """A read-only or full zoo / runs folder, or a file in the way, fails now, not after training; then the
    run is locked (the only writer: see _lock_run) and its destination must be free."""
    from ..tracking import Tracker

    check_destination(plan.destination)
    if plan.spec.train.checkpoint_every > 0:
        check_destination(plan.checkpoints.folder)
    if Tracker.TENSORBOARD in plan.trackers:
        check_destination(plan.runs_dir / "tensorboard" / plan.name)
    if processes().primary:
        _lock_run(hold, plan.name, plan.destination, plan.runs_dir)
    if plan.destination.exists():
        raise StepstoneError(f"'{plan.destination}' already exists; pick another --name or remove it first")


def _with_members(plan: Plan, zoo: Zoo) -> Plan:
    """The composition's members (zoo entries), what the cell means (composition.semantics, which refuses
    an unsupported one) and the mode it trains; each member's files fit its manifest."""
    compose = plan.spec.compose
    if compose is None:
        return plan
    members = tuple(zoo.get(m) for m in compose.members)
    target = comp.Member(plan.name, plan.spec.method.kind, plan.spec.method.options)
    semantics = comp.semantics(compose.block, [_member(e) for e in members], target)
    check_same_backbone([(e.name, e.manifest.backbone) for e in members])
    for entry in members:  # their files fit their manifests (the rules above read manifests only)
        check_artifact(entry.path, entry.manifest)
    return replace(plan, members=members, semantics=semantics, mode=mode_of(plan.spec, semantics))


def _member(entry: Entry) -> comp.Member:
    method = entry.manifest.method
    if entry.manifest.kind is not Kind.ADAPTER:
        raise StepstoneError(f"'{entry.name}' is a {entry.manifest.kind.value}, not an adapter: only adapters compose")
    built = MethodSpec.from_record(method.to_json())
    return comp.Member(entry.name, built.kind, built.options)


def _with_init(plan: Plan, zoo: Zoo) -> Plan:
    """init_from: the artifact the run starts from, resolved and checked against the run (chains.check_init)."""
    if plan.spec.init_from is None:
        return plan
    from .chains import check_init, resolve_init

    path = resolve_init(plan.spec.init_from, zoo)
    init = read_manifest(path)
    check_init(plan.spec, plan.mode, path, init)
    check_artifact(path, init)
    return replace(plan, init=init, init_path=path)


def _lock_run(hold: ExitStack, name: str, destination: Path, runs_dir: Path) -> None:
    """Hold the run's locks until train_run returns: next to its destination (a zoo entry or a run folder) and
    next to its checkpoint folder (RUNS_DIR/.NAME.lock; one file for a composed run, where both are in
    RUNS_DIR). Two processes training the same name into the same zoo or the same RUNS_DIR (a grid's cell
    and a `train` of the same zoo entry included) would otherwise both train and rotate one checkpoint
    folder, and the loser fail at the end. Then clean what killed runs left in those folders."""
    from ..artifacts import remove_leftovers
    from ..locks import exclusive

    hold.enter_context(exclusive([destination, runs_dir / name], f"run '{name}' is already being trained"))
    for folder in (destination.parent, runs_dir, runs_dir / f"{name}{CHECKPOINT_SUFFIX}"):
        remove_leftovers(folder)


# ------------------------------------------------------------------------------------------------ data
def load_data(plan: Plan) -> RunData:
    """Every task's training and dev examples, where they came from, and its head name; a resume must see
    the same examples again."""
    tasks, examples, sources = [], {}, {}
    for task in plan.tasks:
        task, examples[task.name], sources[task.name] = _task_examples(plan.spec, task)
        tasks.append(task)
    heads = {t.name: head_name(plan.name, t.name, i) for i, t in enumerate(tasks)}
    plan.checkpoints.expect("data", {t: _examples_digest(pair) for t, pair in examples.items()}, plan.resume)
    return RunData(tuple(tasks), examples, sources, heads)


def _task_examples(spec: RunSpec, task: TaskSpec) -> tuple[TaskSpec, tuple[list[dict], list[dict]], dict]:
    """One task's (train, dev) examples and their sources record; a task with open labels comes back with its
    label set derived from the training data."""
    train_spec = spec.train
    train_split = Split(spec.train_splits.get(task.name, spec.train_split))
    with provenance.recording() as read_for_train:
        train_examples = load_examples(task, train_split, task.train_language, spec.data_dir,
                                       train_spec.max_train_examples)
        if task.open_labels:  # e.g. CCG supertags: the label set comes from the training data
            task = task.derive_labels(train_examples)
            train_examples = load_examples(task, train_split, task.train_language, spec.data_dir,
                                           train_spec.max_train_examples)
    with provenance.recording() as read_for_dev:
        dev_examples = _dev_examples(task, train_split, len(train_examples), spec.data_dir, train_spec)
    sources = {role: record for role, record in (
        ("train", provenance.data_source(read_for_train, train_split.value, task.train_language, len(train_examples),
                                         spec.data_dir)),
        ("dev", provenance.data_source(read_for_dev, Split.VALIDATION.value, task.train_language, len(dev_examples),
                                       spec.data_dir))) if record is not None}
    return task, (train_examples, dev_examples), sources


def _dev_examples(task: TaskSpec, train_split: Split, n_train: int, data_dir: Path | None,
                  train_spec: TrainSpec) -> list[dict]:
    """English dev examples. Training on the validation split itself (where no train split exists here)
    holds out its last `max_eval_examples` examples, after the `n_train` it trains on, as dev."""
    if not train_spec.dev:
        return []
    if train_split is not Split.VALIDATION:
        return load_examples(task, Split.VALIDATION, task.train_language, data_dir, train_spec.max_eval_examples)
    rest = load_examples(task, Split.VALIDATION, task.train_language, data_dir)[n_train:]
    if train_spec.max_eval_examples is not None:
        rest = rest[-train_spec.max_eval_examples:]
    if not rest:
        raise StepstoneError(f"task '{task.name}' trains on its whole validation split ({n_train} examples), "
                             "so nothing is left for dev: set train.max_train_examples lower, or train.dev=false")
    return rest


def _examples_digest(examples: tuple[list[dict], list[dict]]) -> str:
    """sha256 of a task's training and dev examples (what a resumed run must train and select on again)."""
    import hashlib

    text = json.dumps(examples, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------------ model
def build_model(plan: Plan, data: RunData, progress: ProgressFactory) -> tuple[Backbone, Trainable]:
    """The backbone with the members and init_from loaded, the target adapter, the composition's own layer,
    the heads, the active setup, and the trainable set the mode names (asserted)."""
    spec, mode, name = plan.spec, plan.mode, plan.name
    with progress(f"load backbone {spec.backbone.name}", None):
        backbone = _loaded_backbone(plan)
    model, layer, members = backbone.model, plan.layer, plan.member_names
    torch.manual_seed(spec.train.seed)  # adapter, composition layer and head initialisation
    if mode is not Mode.FULL and plan.init is not None:
        # a chain: init_from's adapter weights under this run's name (its heads stay behind: new ones below)
        methods.load_adapter(model, plan.init_path, name, with_head=False)
    elif mode is not Mode.FULL:
        methods.add_adapter(model, name, spec.method)
    if layer is not None:
        layer.add(model, members)
    for t in data.tasks:
        handler_for(t).add_head(model, data.heads[t.name], t)
    setup = None if mode is Mode.FULL else comp.adapters_setup(spec.compose, name, plan.semantics)
    methods.activate(model, setup, head=name)
    if layer is not None and layer.activate is not None:
        layer.activate(model, members)
    place(model)
    names = trainable_names(model, mode, name, layer.name(members) if layer is not None else None,
                            tuple(data.heads.values()))
    return backbone, set_trainable(model, names, backbone.num_parameters)


def _loaded_backbone(plan: Plan) -> Backbone:
    """The backbone, with the members' adapters and init_from's encoder loaded, each checked to be trained on
    it; a resume must load the same backbone."""
    spec = plan.spec
    backbone = load_backbone(spec.backbone)
    backbone.check_max_length(spec.train.max_length)
    plan.checkpoints.expect("backbone", backbone.fingerprint, plan.resume)
    if plan.mode is not Mode.FULL:
        methods.check_fits(spec.method, backbone.model.config)
    for entry in plan.members:
        check_backbone(backbone, entry.name, entry.manifest.backbone)
        methods.load_adapter(backbone.model, entry.path, entry.name, with_head=False)
    if plan.init is not None:
        check_backbone(backbone, str(plan.init_path), plan.init.backbone)
    if plan.init is not None and plan.mode is Mode.FULL:
        # a full fine-tune run's encoder weights without its head (the paper reloads encoder-only)
        load_full(backbone.model, ArtifactLayout(plan.init_path).full_weights, encoder_only=True)
    return backbone


# ------------------------------------------------------------------------------------------------ encode, train
def encode(plan: Plan, data: RunData, backbone: Backbone, progress: ProgressFactory) -> list[TaskData]:
    """Every task's training and dev examples as model features."""
    parts, train_spec = [], plan.spec.train
    for t in data.tasks:
        handler, (train_examples, dev_examples) = handler_for(t), data.examples[t.name]
        settings = dict(tokenizer=backbone.tokenizer, task=t, max_length=train_spec.max_length,
                        doc_stride=train_spec.doc_stride)
        dev_rows = tokenized.encode(handler, dev_examples, train=False, **settings, progress=progress,
                                    description=f"tokenize {t.name} dev") if dev_examples else []
        parts.append(TaskData(t, handler, data.heads[t.name],
                              tokenized.encode(handler, train_examples, train=True, **settings, progress=progress,
                                               description=f"tokenize {t.name} train"),
                              dev_examples, dev_rows))
    return parts


def fit(plan: Plan, backbone: Backbone, parts: list[TaskData], trainable: Trainable,
        progress: ProgressFactory) -> TrainResult:
    """The one training loop (training.train), with the run's live trackers open in the first process."""
    from .. import tracking

    primary = processes().primary  # several under `accelerate launch`: only the first writes and reports
    live = (tracking.open_trackers(plan.trackers, plan.name, plan.runs_dir, to_dict(plan.spec))
            if plan.trackers and primary else None)
    with (live or nullcontext()) as sink:
        return train(backbone.model, parts, backbone.tokenizer, plan.spec.train, plan.mode, trainable,
                     progress, sink, plan.checkpoints, plan.resume)


# ------------------------------------------------------------------------------------------------ save
def describe_run(plan: Plan, data: RunData, backbone: Backbone, parts: list[TaskData], trainable: Trainable,
                 result: TrainResult) -> Manifest:
    """The run's manifest (its file hashes are added when it is written)."""
    spec, tasks, heads, compose = plan.spec, data.tasks, data.heads, plan.spec.compose
    return Manifest.new(
        kind=Kind.ADAPTER if plan.standalone else Kind.RUN, name=plan.name, backbone=BackboneRecord.of(backbone),
        method=MethodRecord.of(spec.method), tasks=tuple(TaskRecord.of(t, heads[t.name]) for t in tasks),
        composition=None if compose is None else CompositionRecord(
            compose.block, tuple(compose.members), plan.semantics.value, comp.describe(compose, plan.name),
            {e.name: e.manifest.method for e in plan.members}, compose.weights),
        init_from=None if plan.init is None else {"path": str(plan.init_path), "name": plan.init.name},
        **({} if plan.init is None else {"chain": [*chain_of(plan.init), "+".join(spec.task)]}),
        mode=plan.mode, spec=to_dict(spec), seed=spec.train.seed, data=_data_record(parts, data.sources),
        trainable=TrainableRecord(trainable.count, trainable.percent, trainable.backbone),
        metrics={"dev": result.dev_metrics, "best_epoch": result.best_epoch, "main": tasks[0].metric.main,
                 **({"dev_by_task": result.history[result.best_epoch - 1]["dev_by_task"]}
                    if len(tasks) > 1 and spec.train.dev else {})},
        history=result.history,
        learning=health.assess(parts, result),  # did it learn? (stepstone.health)
        train_seconds=round(result.seconds, 3), peak_rss_mb=_peak_rss_mb(), processes=processes().world)


def save(plan: Plan, model: Any, manifest: Manifest, result: TrainResult, trainable: Trainable,
         progress: ProgressFactory) -> Outcome:
    """Write the artifact atomically (one writer; the other processes wait for it), then drop the checkpoints."""
    procs, checkpoints, destination = processes(), plan.checkpoints, plan.destination
    try:
        if procs.primary:
            with progress(f"save {destination}", None), _keeping(checkpoints), atomic_dir(destination) as tmp:
                _write_files(plan, model, manifest, result, tmp)
                write_manifest(tmp, manifest)
            checkpoints.clear()
    finally:  # also when the writer failed: the others then fail to read it, instead of waiting forever
        procs.barrier()
    if interrupts.received() is not None:  # during the last dev evaluation or the save: both are done
        raise interrupts.Interrupted(interrupts.received(), f"after the run was saved to {destination}",
                                     primary=procs.primary)
    return Outcome(destination, read_manifest(destination, verify=procs.primary), trainable, result, procs.primary)


def _write_files(plan: Plan, model: Any, manifest: Manifest, result: TrainResult, tmp: Path) -> None:
    """The artifact's files but the manifest, into `tmp`: the weights (a zoo adapter's, a full run's, or a
    run's target + member copies + its composition layer), the extra task heads, config.yaml, the train log."""
    layout, name, layer = ArtifactLayout(tmp), plan.name, plan.layer
    for record in manifest.tasks[1:]:  # extra multi-task heads; the first task's head travels with the adapter
        layout.head(record.name).mkdir(parents=True)
        model.save_head(str(layout.head(record.name)), record.head, use_safetensors=True)
    if plan.standalone:
        methods.save_adapter(model, tmp, name, with_head=True)
    elif plan.mode is Mode.FULL:
        from safetensors.torch import save_model

        save_model(model, str(layout.full_weights))
    else:
        methods.save_adapter(model, layout.target, name, with_head=True)
        for entry in plan.members:  # runs are self-contained: the exact member weights travel with them
            shutil.copytree(entry.path, layout.member(entry.name), ignore=_outputs_of(entry.path))
        if layer is not None:
            layer.save(model, tmp / layer.folder, plan.member_names)
    layout.config.write_text(dump_yaml(plan.spec), encoding="utf-8")
    log = "".join(json.dumps(r, sort_keys=True) + "\n" for r in result.log)
    layout.train_log.write_text(log, encoding="utf-8")


@contextmanager
def _keeping(checkpoints: Checkpoints) -> Iterator[None]:
    """A save that failed on the filesystem (disk full, read-only ...) also says what training left."""
    try:
        yield
    except SaveError as err:
        raise SaveError(f"{err}; {checkpoints.describe_latest()}") from None


def _outputs_of(entry: Path) -> Any:
    """copytree `ignore`: a zoo entry's evaluations/ folder (outputs written after it was saved, no part of it)."""
    return lambda folder, names: [OUTPUTS] if Path(folder) == entry and OUTPUTS in names else []


def _data_record(parts: list[TaskData], sources: dict[str, dict] | None = None) -> dict:
    first = parts[0]
    record = {"train_examples": sum(len({r.get("example_index", i) for i, r in enumerate(p.rows)}) for p in parts),
              "train_features": sum(len(p.rows) for p in parts), "dev_examples": len(first.dev_examples)}
    if len(parts) > 1:
        record["by_task"] = {p.task.name: {"train_features": len(p.rows), "dev_examples": len(p.dev_examples)}
                             for p in parts}
    if sources and any(sources.values()):  # files or hub datasets read; generated toy data have none
        record["sources"] = sources
    return record


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB): per run when each run is its own process."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
