"""What the CLI calls: train a zoo adapter or a composed / fully fine-tuned run, evaluate it zero-shot.

Everything that can be checked without loading a model (task, names, zoo members and their
compatibility, output paths, data) is checked before anything is loaded or written.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from . import composition as comp
from . import health, interrupts, methods, provenance, tokenized
from .artifacts import OUTPUTS, SaveError, atomic_dir, check_destination, check_tree, to_json, write_text_atomic
from .backbone import Backbone, load_backbone, place
from .checkpoint import SUFFIX as CHECKPOINT_SUFFIX
from .checkpoint import Checkpoints
from .config import build, dump_yaml, to_dict
from .tasks.examples import load_examples
from .distributed import processes
from .errors import StepstoneError
from .evaluation import score
from .formats import handler_for
from .formats.qa import check_window_settings
from .integrity import check_artifact, load_full
from .manifest import (ArtifactLayout, BackboneRecord, CompositionRecord, Kind, Manifest, MethodRecord,
                       TaskRecord, TrainableRecord, head_name, read_manifest, write_manifest)
from .progress import ProgressFactory, silent
from .specs import BackboneSpec, Block, MethodSpec, Precision, RunSpec, TrainSpec
from .tasks import Split, TaskFormat, TaskSpec, get_task
from .training import MODES, Mode, TaskData, TrainingMode, TrainResult, Trainable, set_trainable, train, trainable_names
from .zoo import Entry, Zoo

FULL_WEIGHTS = ArtifactLayout.FULL_WEIGHTS


@dataclass(frozen=True)
class Outcome:
    """A finished training: where it was saved, its manifest, and what was trained."""

    path: Path
    manifest: Manifest
    trainable: Trainable
    result: TrainResult
    primary: bool = True  # False in the other processes of a multi-process run (they print nothing)


@dataclass(frozen=True)
class Evaluation:
    """Zero-shot scores of one artifact on one task split: language -> metrics."""

    path: Path
    task: str
    split: str
    metric: str
    scores: dict[str, dict[str, float]]
    output: Path
    train_language: str = "en"
    skipped: dict[str, str] = field(default_factory=dict)  # language -> why it was not scored (no file)
    outside_benchmark: tuple[str, ...] = ()  # languages scored from local files beyond the benchmark's list

    @property
    def average(self) -> float:
        return sum(s[self.metric] for s in self.scores.values()) / len(self.scores)

    @property
    def zero_shot_languages(self) -> list[str]:
        """The evaluated languages other than the one the task trains in (English)."""
        return [lang for lang in self.scores if lang != self.train_language]

    @property
    def zero_shot(self) -> float | None:
        """The main metric averaged over `zero_shot_languages` (the headline); None if only English was scored."""
        langs = self.zero_shot_languages
        return sum(self.scores[lang][self.metric] for lang in langs) / len(langs) if langs else None


def set_threads(threads: int | None) -> None:
    """Torch CPU threads: the spec's value, else $STEPSTONE_THREADS, else torch's default."""
    value = threads or int(os.environ.get("STEPSTONE_THREADS", "0") or 0)
    if value > 0:
        torch.set_num_threads(value)


def mode_of(spec: RunSpec, semantics: comp.Semantics | None = None) -> TrainingMode:
    """The training mode: the composition semantics' trained layer's (composition.LAYERS), else the method's own."""
    return MODES.get(comp.training_mode(semantics, spec.method.kind))


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


def _member(entry: Entry) -> comp.Member:
    method = entry.manifest.method
    if entry.manifest.kind is not Kind.ADAPTER:
        raise StepstoneError(f"'{entry.name}' is a {entry.manifest.kind.value}, not an adapter: only adapters compose")
    built = MethodSpec.from_record(method.to_json())
    return comp.Member(entry.name, built.kind, built.options)


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
    with interrupts.stopping(), ExitStack() as hold:
        try:
            return _train_run(spec, zoo=zoo, runs_dir=runs_dir, progress=progress, tensorboard=tensorboard,
                              resume=resume, log=log, hold=hold)
        except interrupts.Interrupted as stop:
            if stop.detail is not None:
                raise
            checkpoints = checkpoints_of(replace(spec, train=spec.train.resolved(spec.method.kind)), runs_dir)
            raise interrupts.Interrupted(stop.signum, f"before the run was saved: {checkpoints.describe_latest()}",
                                         checkpoints.latest() is not None, processes().primary) from None


def _train_run(spec: RunSpec, *, zoo: Zoo | None, runs_dir: Path, progress: ProgressFactory, tensorboard: bool,
               resume: bool, log: Sequence[str], hold: ExitStack) -> Outcome:
    """train_run's work; `hold` (an ExitStack) holds the run's lock until train_run returns."""
    from contextlib import nullcontext

    from . import tracking

    chosen = tracking.parse([*log, *([tracking.Tracker.TENSORBOARD] if tensorboard else [])])
    tracking.check(chosen)
    zoo = zoo or Zoo()
    tasks = [get_task(t) for t in spec.task]
    untrainable = [t.name for t in tasks if not t.trainable]
    if untrainable:
        raise StepstoneError(f"task(s) {', '.join(untrainable)} are evaluation-only (retrieval): nothing to train")
    name, mode = spec.run_name, mode_of(spec)
    standalone = spec.compose is None and mode is not Mode.FULL
    destination = zoo.path(name) if standalone else Path(runs_dir) / name
    train_spec = spec.train.resolved(spec.method.kind)
    spec = replace(spec, train=train_spec)
    if any(t.format is TaskFormat.QA for t in tasks):  # only QA has windows: doc_stride means nothing elsewhere
        check_window_settings(train_spec.max_length, train_spec.doc_stride)  # settings first: before lock and reads
    checkpoints = checkpoints_of(spec, runs_dir)
    # a read-only or full zoo / runs folder, or a file in the way, fails now, not after training
    check_destination(destination)
    if train_spec.checkpoint_every > 0:
        check_destination(checkpoints.folder)
    if tracking.Tracker.TENSORBOARD in chosen:
        check_destination(Path(runs_dir) / "tensorboard" / name)
    if processes().primary:  # the only writer: see _lock_run
        _lock_run(hold, name, destination, Path(runs_dir))
    if destination.exists():
        raise StepstoneError(f"'{destination}' already exists; pick another --name or remove it first")
    members = [zoo.get(m) for m in spec.compose.members] if spec.compose else []
    semantics = None
    if spec.compose is not None:
        target = comp.Member(name, spec.method.kind, spec.method.options)
        semantics = comp.semantics(spec.compose.block, [_member(e) for e in members], target)
        mode = mode_of(spec, semantics)
        _same_backbone([(e.name, e.manifest.backbone) for e in members])
    layer = comp.trained_layer(semantics)
    for entry in members:  # their files fit their manifests (the rules above read manifests only)
        check_artifact(entry.path, entry.manifest)
    init = read_manifest(Path(spec.init_from)) if spec.init_from else None
    if init is not None and init.method.kind != "full":
        raise StepstoneError(f"init_from '{spec.init_from}' is not a full fine-tune run")
    if init is not None:
        check_artifact(Path(spec.init_from), init)
    checkpoints.check(resume)
    checkpoints.expect("members", {e.name: {"files": e.manifest.files} for e in members}, resume)
    checkpoints.expect("init_from", None if init is None else {"path": str(spec.init_from), "files": init.files},
                       resume)
    set_threads(train_spec.threads)
    data, sources = {}, {}
    for i, t in enumerate(tasks):
        train_split = Split(spec.train_splits.get(t.name, spec.train_split))
        with provenance.recording() as read_for_train:
            train_examples = load_examples(t, train_split, t.train_language, spec.data_dir,
                                           train_spec.max_train_examples)
            if t.open_labels:  # e.g. CCG supertags: the label set comes from the training data
                tasks[i] = t = t.derive_labels(train_examples)
                train_examples = load_examples(t, train_split, t.train_language, spec.data_dir,
                                               train_spec.max_train_examples)
        with provenance.recording() as read_for_dev:
            dev_examples = _dev_examples(t, train_split, len(train_examples), spec.data_dir, train_spec)
        data[t.name] = (train_examples, dev_examples)
        sources[t.name] = {role: record for role, record in (
            ("train", provenance.data_source(read_for_train, train_split.value, t.train_language, len(train_examples),
                                             spec.data_dir)),
            ("dev", provenance.data_source(read_for_dev, Split.VALIDATION.value, t.train_language, len(dev_examples),
                                           spec.data_dir))) if record is not None}
    heads = {t.name: head_name(name, t.name, i) for i, t in enumerate(tasks)}
    checkpoints.expect("data", {t: _examples_digest(examples) for t, examples in data.items()}, resume)

    if not processes().primary:  # under `accelerate launch` the first process reports progress
        progress = silent
    with progress(f"load backbone {spec.backbone.name}", None):
        backbone = load_backbone(spec.backbone)
        backbone.check_max_length(train_spec.max_length)
        checkpoints.expect("backbone", backbone.fingerprint, resume)
        if mode is not Mode.FULL:
            methods.check_fits(spec.method, backbone.model.config)
        for entry in members:
            _check_backbone(backbone, entry.name, entry.manifest.backbone)
            methods.load_adapter(backbone.model, entry.path, entry.name, with_head=False)
        if init is not None:
            _check_backbone(backbone, str(spec.init_from), init.backbone)
            _load_encoder(backbone.model, ArtifactLayout(Path(spec.init_from)).full_weights)
    model = backbone.model
    torch.manual_seed(train_spec.seed)  # adapter, fusion and head initialisation
    if mode is not Mode.FULL:
        methods.add_adapter(model, name, spec.method)
    if layer is not None:
        layer.add(model, spec.compose.members)
    for t in tasks:
        handler_for(t).add_head(model, heads[t.name], t)
    setup = None if mode is Mode.FULL else comp.adapters_setup(spec.compose, name, semantics)
    methods.activate(model, setup, head=name)
    if layer is not None and layer.activate is not None:
        layer.activate(model, spec.compose.members)
    place(model)
    names = trainable_names(model, mode, name, layer.name(spec.compose.members) if layer else None,
                            tuple(heads.values()))
    trainable = set_trainable(model, names, backbone.num_parameters)

    parts = []
    for t in tasks:
        handler, (train_examples, dev_examples) = handler_for(t), data[t.name]
        encode = dict(tokenizer=backbone.tokenizer, task=t, max_length=train_spec.max_length,
                      doc_stride=train_spec.doc_stride)
        dev_rows = tokenized.encode(handler, dev_examples, train=False, **encode, progress=progress,
                                    description=f"tokenize {t.name} dev") if dev_examples else []
        parts.append(TaskData(t, handler, heads[t.name],
                              tokenized.encode(handler, train_examples, train=True, **encode, progress=progress,
                                               description=f"tokenize {t.name} train"),
                              dev_examples, dev_rows))
    procs = processes()  # several under `accelerate launch`: only the first writes and reports
    live = tracking.open_trackers(chosen, name, Path(runs_dir), to_dict(spec)) if chosen and procs.primary else None
    with (live or nullcontext()) as sink:
        result = train(model, parts, backbone.tokenizer, train_spec, mode, trainable,
                       progress, sink, checkpoints, resume)
    task = tasks[0]
    hold.enter_context(interrupts.deferred())  # the save and the checkpoint clean-up are not cut short

    manifest = Manifest.new(
        kind=Kind.ADAPTER if standalone else Kind.RUN, name=name, backbone=BackboneRecord.of(backbone),
        method=MethodRecord.of(spec.method), tasks=tuple(TaskRecord.of(t, heads[t.name]) for t in tasks),
        composition=None if spec.compose is None else CompositionRecord(
            spec.compose.block, tuple(spec.compose.members), semantics.value, comp.describe(spec.compose, name),
            {e.name: e.manifest.method for e in members}),
        init_from=None if init is None else {"path": str(spec.init_from), "name": init.name},
        mode=mode, spec=to_dict(spec), seed=train_spec.seed, data=_data_record(parts, sources),
        trainable=TrainableRecord(trainable.count, trainable.percent, trainable.backbone),
        metrics={"dev": result.dev_metrics, "best_epoch": result.best_epoch, "main": task.metric.main,
                 **({"dev_by_task": result.history[result.best_epoch - 1]["dev_by_task"]}
                    if len(tasks) > 1 and train_spec.dev else {})},
        history=result.history,
        learning=health.assess(parts, result),  # did it learn? (stepstone.health)
        train_seconds=round(result.seconds, 3), peak_rss_mb=_peak_rss_mb(), processes=procs.world)
    try:
        if procs.primary:  # one writer; the other processes wait for it
            with progress(f"save {destination}", None), _keeping(checkpoints), atomic_dir(destination) as tmp:
                layout = ArtifactLayout(tmp)
                for t in tasks[1:]:  # extra multi-task heads; the first task's head travels with the adapter
                    layout.head(t.name).mkdir(parents=True)
                    model.save_head(str(layout.head(t.name)), heads[t.name], use_safetensors=True)
                if standalone:
                    methods.save_adapter(model, tmp, name, with_head=True)
                elif mode is Mode.FULL:
                    from safetensors.torch import save_model

                    save_model(model, str(layout.full_weights))
                else:
                    methods.save_adapter(model, layout.target, name, with_head=True)
                    for entry in members:  # runs are self-contained: the exact member weights travel with them
                        shutil.copytree(entry.path, layout.member(entry.name), ignore=_outputs_of(entry.path))
                    if layer is not None:
                        layer.save(model, layout.layer(layer.folder), spec.compose.members)
                layout.config.write_text(dump_yaml(spec), encoding="utf-8")
                log = "".join(json.dumps(r, sort_keys=True) + "\n" for r in result.log)
                layout.train_log.write_text(log, encoding="utf-8")
                write_manifest(tmp, manifest)
            checkpoints.clear()
    finally:  # also when the writer failed: the others then fail to read it, instead of waiting forever
        procs.barrier()
    if interrupts.received() is not None:  # during the last dev evaluation or the save: both are done
        raise interrupts.Interrupted(interrupts.received(), f"after the run was saved to {destination}",
                                     primary=procs.primary)
    return Outcome(destination, read_manifest(destination, verify=procs.primary), trainable, result, procs.primary)


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


def _lock_run(hold: ExitStack, name: str, destination: Path, runs_dir: Path) -> None:
    """Hold the run's locks until train_run returns: next to its destination (a zoo entry or a run folder) and
    next to its checkpoint folder (RUNS_DIR/.NAME.lock; one file for a composed run, where both are in
    RUNS_DIR). Two processes training the same name into the same zoo or the same RUNS_DIR (a grid's cell
    and a `train` of the same zoo entry included) would otherwise both train and rotate one checkpoint
    folder, and the loser fail at the end. Then clean what killed runs left in those folders."""
    from .artifacts import remove_leftovers
    from .locks import exclusive

    hold.enter_context(exclusive([destination, runs_dir / name], f"run '{name}' is already being trained"))
    for folder in (destination.parent, runs_dir, runs_dir / f"{name}{CHECKPOINT_SUFFIX}"):
        remove_leftovers(folder)


def _examples_digest(examples: tuple[list[dict], list[dict]]) -> str:
    """sha256 of a task's training and dev examples (what a resumed run must train and select on again)."""
    import hashlib

    text = json.dumps(examples, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def checkpoints_of(spec: RunSpec, runs_dir: Path) -> Checkpoints:
    """The checkpoint folder of a run (`runs_dir/<name>.checkpoint`: run names hold no '.', so it never
    clashes with a run) for a spec whose train settings are resolved."""
    return Checkpoints(Path(runs_dir) / f"{spec.run_name}{CHECKPOINT_SUFFIX}", spec.train.checkpoint_every,
                       to_dict(spec))


def load_for_inference(path: Path, backbone_name: str | None = None) -> tuple[Backbone, Manifest, TaskSpec | None]:
    """Rebuild the model an artifact describes (backbone, members, fusion, target, every task head) and
    activate it with the first task's head. Returns the backbone, the manifest and that task (None for
    an adapter without a head, e.g. one imported from PEFT)."""
    manifest, layout = read_manifest(path), ArtifactLayout(path)
    check_artifact(path, manifest)  # configs fit the manifest: before the backbone is loaded
    record = manifest.backbone
    local = (record.source or {}).get("local")
    if backbone_name is None and local and not Path(local).is_dir():
        raise StepstoneError(f"'{manifest.name}' was trained on the backbone folder '{local}', which is "
                             f"not there: pass --backbone with where it is now (its fingerprint is checked)")
    # the backbone as it was trained on (quantisation, attention); a local folder by its absolute path, so a
    # relative name recorded elsewhere still finds it
    backbone = load_backbone(record.spec(backbone_name or record.location()))
    _check_backbone(backbone, manifest.name, record)
    task = manifest.task.registered() if manifest.tasks else None
    model, name = backbone.model, manifest.name
    layer = None  # the composition's own trained layer, if any
    if manifest.mode == Mode.FULL:
        for record in manifest.tasks:
            handler_for(record.registered()).add_head(model, record.head, record.registered())
        _load_full(model, layout.full_weights)
        setup = None
    elif manifest.kind is Kind.ADAPTER:
        methods.load_adapter(model, path, name, with_head=task is not None)
        setup = name
    else:
        composition = manifest.composition
        for member in composition.members:
            methods.load_adapter(model, layout.member(member), member, with_head=False)
        layer = comp.trained_layer(comp.Semantics(composition.semantics))
        if layer is not None:
            layer.load(model, layout.layer(layer.folder), composition.members)
        methods.load_adapter(model, layout.target, name, with_head=True)
        setup = comp.adapters_setup(composition.composition(), name, comp.Semantics(composition.semantics))
    if manifest.mode != Mode.FULL:
        for t in manifest.tasks[1:]:  # further multi-task heads
            methods.load_head(model, layout.head(t.name), t.head)
    methods.activate(model, setup, head=name if task is not None else None)
    if layer is not None and layer.activate is not None:
        layer.activate(model, composition.members)
    place(model)
    model.eval()
    return backbone, manifest, task


def resolve_artifact(target: str, zoo: Zoo | None = None) -> Path:
    """A run directory path, or the name of a zoo entry."""
    path = Path(target)
    if path.is_dir():
        return path
    zoo = zoo or Zoo()
    if "/" not in target and os.sep not in target:
        return zoo.get(target, verify=False).path
    raise StepstoneError(f"'{target}' is neither a run directory nor a zoo entry in {zoo.root}")


def evaluate(target: str | None, *, task: str | None = None, zoo: Zoo | None = None,
             langs: Sequence[str] | None = None, split: str = "test", batch_size: int = 32,
             max_examples: int | None = None, data_dir: Path | None = None, max_length: int | None = None,
             backbone: str | None = None, output: Path | None = None, layer: int | None = None,
             pooling: str = "mean", doc_stride: int | None = None,
             progress: ProgressFactory = silent) -> Evaluation:
    """Zero-shot evaluation in every language asked for (default: the benchmark's list for the task).
    A language without a local file is skipped (recorded with the reason); none with data is an error.

    `target` is a run folder or zoo entry; `task` defaults to its (first) task and may name another
    task it has a head for, or a retrieval task (bucc, tatoeba: embeddings with the artifact's adapters
    active, no head). With no target, `backbone` + a retrieval task evaluates the bare backbone.
    `max_length` (tokens per example) and, for QA, `doc_stride` (window overlap) default to what the
    artifact was trained with (retrieval: 128); either one given, the report records both under `encoding`.
    Scores go to `<artifact>/evaluations/<task>.<split>.json`, `evaluations/<backbone>.<task>.<split>.json`
    without an artifact, or `output`."""
    from .retrieval import RetrievalSettings

    if target is None and (backbone is None or task is None):
        raise StepstoneError("name a run or zoo entry to evaluate, or give --backbone and --task for a "
                             "retrieval task (bucc, tatoeba), which needs no training")
    path = resolve_artifact(target, zoo) if target is not None else None
    manifest = read_manifest(path, verify=False) if path is not None else None
    if path is not None:
        check_tree(path)  # no link inside: scores are written into it
    records = {t.name: t for t in manifest.tasks} if manifest else {}
    if task is None and not records:
        name = manifest.name
        raise StepstoneError(f"'{name}' has no task head (an imported adapter): evaluate it on a retrieval task "
                             f"(--task bucc or tatoeba), or train a head on it: --on \"Stack({name})\"")
    name_asked = task or manifest.task.name
    spec_task = records[name_asked].registered() if name_asked in records else get_task(name_asked)
    heads = {name: t.head for name, t in records.items()}
    if spec_task.trainable and spec_task.name not in heads:
        # a sibling task with the same output space serves too: an NLI head (ANLI) scores XNLI,
        # a QA head (TyDiQA) scores XQuAD
        sibling = next((r for r in records.values() if r.format == spec_task.format.value
                        and r.labels == spec_task.labels and r.num_choices == spec_task.num_choices), None)
        if sibling is not None:
            heads[spec_task.name] = sibling.head
    if spec_task.trainable and spec_task.name not in heads:
        what = f"'{manifest.name}'" if manifest else "a bare backbone"
        raise StepstoneError(f"{what} has no head for task '{spec_task.name}' (heads: {', '.join(heads) or 'none'}); "
                             "retrieval tasks (bucc, tatoeba) work with any artifact")
    try:
        split_value = Split(split)
    except ValueError:
        raise StepstoneError(f"unknown split '{split}' (valid: {', '.join(s.value for s in Split)})") from None
    trained = manifest.spec["train"] if spec_task.trainable else {}
    length, length_name = _setting(max_length, "--max-length", trained.get("max_length", 128),
                                   "the run's train.max_length" if trained else "the retrieval default max_length")
    if length < 1:
        raise StepstoneError(f"--max-length must be at least 1 (got {max_length})")
    stride = None
    if spec_task.format is TaskFormat.QA:
        stride, stride_name = _setting(doc_stride, "--doc-stride", trained["doc_stride"], "the run's train.doc_stride")
        check_window_settings(length, stride, stride_name, length_name)
    elif doc_stride is not None:
        raise StepstoneError(f"--doc-stride applies to QA tasks only: '{spec_task.name}' is a "
                             f"{spec_task.format.value} task, which has no windows")
    default = path / OUTPUTS if path is not None else Path("evaluations") / _slug(backbone)
    destination = output or default / f"{spec_task.name}.{split_value.value}.json"
    check_destination(destination, "write")  # before the data and the model are loaded
    languages = list(dict.fromkeys(langs)) if langs else list(spec_task.official_languages)
    recorded = manifest.spec.get("data_dir") if manifest else None
    data_dir = data_dir if data_dir is not None else (Path(recorded) if recorded else None)
    examples, skipped, sources = _examples_by_language(spec_task, split_value, languages, data_dir, max_examples)
    languages = [lang for lang in languages if lang in examples]
    outside = tuple(lang for lang in languages if lang not in spec_task.official_languages)
    settings = RetrievalSettings(layer=layer, pooling=pooling, batch_size=batch_size, max_length=length)
    with progress(f"load {path if path is not None else backbone}", None):
        if manifest is not None:
            loaded, manifest, _ = load_for_inference(path, backbone)
        else:
            loaded = load_backbone(BackboneSpec(backbone))
    loaded.check_max_length(length, length_name)
    scores = {}
    for lang in languages:
        if spec_task.trainable:
            scores[lang] = _score_task(loaded, spec_task, heads[spec_task.name], examples[lang], lang, manifest,
                                       batch_size, length, stride, progress)
        else:
            scores[lang] = _score_retrieval(loaded, spec_task, examples[lang], lang, settings, progress)
    name = manifest.name if manifest else loaded.spec.name
    result = Evaluation(path or destination.parent, spec_task.name, split_value.value, spec_task.metric.main, scores,
                        destination, spec_task.train_language, skipped, outside)
    report = {"artifact": name, "task": spec_task.name, "split": split_value.value, "metric": spec_task.metric.main,
              "scores": scores, "examples": {lang: len(ex) for lang, ex in examples.items()}}
    if result.zero_shot is not None:  # the headline: the main metric over the languages other than English
        report["zero_shot"] = {"mean": result.zero_shot, "languages": result.zero_shot_languages}
    if sources:
        report["sources"] = sources
    if skipped:
        report["skipped"] = skipped
    if outside:
        report["outside_benchmark"] = list(outside)
    if not spec_task.trainable:
        report["retrieval"] = {"layer": settings.resolve_layer(loaded.model), "pooling": settings.pooling.value,
                               "max_length": settings.max_length}
    elif max_length is not None or doc_stride is not None:  # chosen here, not the run's (in its manifest)
        report["encoding"] = {"max_length": length, **({"doc_stride": stride} if stride is not None else {})}
    write_text_atomic(destination, to_json(report))
    return result


def _examples_by_language(task: TaskSpec, split: Split, languages: list[str], data_dir: Path | None,
                          limit: int | None) -> tuple[dict[str, list[dict]], dict[str, str], dict[str, list]]:
    """The examples of every language that has data, why each other one has none (no local file), and
    where each language's data came from (files or hub datasets; generated toy data have none). Any
    other problem (a malformed file, an unknown language) is an error. No language with data: error."""
    from .tasks.examples import missing_data

    examples, skipped, sources = {}, {}, {}
    for lang in languages:
        reason = missing_data(task, split, lang, data_dir)
        if reason is None:
            with provenance.recording() as read:
                examples[lang] = load_examples(task, split, lang, data_dir, limit)
            record = provenance.data_source(read, split.value, lang, len(examples[lang]), data_dir)
            if record is not None:
                sources[lang] = record["sources"]
        else:
            skipped[lang] = reason
    if not examples:
        first, *rest = languages
        more = f" (and likewise for {len(rest)} more: {', '.join(rest)})" if rest else ""
        raise StepstoneError(f"no {split.value} data for task '{task.name}' in any language asked for: "
                             f"{skipped[first]}{more}")
    return examples, skipped, sources


def _setting(given: int | None, flag: str, default: int, name: str) -> tuple[int, str]:
    """An evaluation setting and how error messages name it: the flag, or where its default came from."""
    return (given, flag) if given is not None else (default, name)


def _score_task(loaded: Backbone, task: TaskSpec, head: str, examples: list[dict], lang: str, manifest: Manifest,
                batch_size: int, max_length: int, doc_stride: int | None, progress: ProgressFactory) -> dict[str, float]:
    handler, trained = handler_for(task), manifest.spec["train"]
    rows = tokenized.encode(handler, examples, loaded.tokenizer, task, max_length,
                            trained["doc_stride"] if doc_stride is None else doc_stride, train=False,
                            progress=progress, description=f"tokenize {task.name} [{lang}]")
    return score(loaded.model, handler, task, examples, rows, loaded.tokenizer, batch_size, lang, progress, head=head,
                 precision=Precision(trained.get("precision", Precision.FP32.value)))


def _score_retrieval(loaded: Backbone, task: TaskSpec, examples: list[dict], lang: str, settings: Any,
                     progress: ProgressFactory) -> dict[str, float]:
    from .data.readers import BuccData
    from .metrics import Metric
    from .retrieval import evaluate_bucc, evaluate_tatoeba

    if task.metric is Metric.BUCC_F1:
        (problem,) = examples
        data = BuccData(problem["source"], problem["target"], problem["gold"])
        return evaluate_bucc(loaded.model, loaded.tokenizer, data, settings, progress, f"{task.name} [{lang}]")
    pairs = [(e["source"], e["target"]) for e in examples]
    return evaluate_tatoeba(loaded.model, loaded.tokenizer, pairs, settings, progress, f"{task.name} [{lang}]")


def _slug(name: str) -> str:
    """A backbone id or path as one folder name (a local folder by its own name)."""
    name = Path(name).name if Path(name).is_dir() else name
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip("/")).strip("_") or "backbone"


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


def _check_backbone(backbone: Backbone, what: str, record: BackboneRecord) -> None:
    if record.fingerprint != backbone.fingerprint:
        raise StepstoneError(
            f"'{what}' was trained on backbone '{record.name}' (fingerprint {record.fingerprint}), "
            f"not on the loaded '{backbone.spec.name}' (fingerprint {backbone.fingerprint})"
        )


def _same_backbone(records: list[tuple[str, BackboneRecord]]) -> None:
    prints = {r.fingerprint for _, r in records}
    if len(prints) > 1:
        detail = ", ".join(f"{name}: {r.name} ({r.fingerprint})" for name, r in records)
        raise StepstoneError(f"composition members come from different backbones: {detail}")


def _load_full(model: Any, weights: Path) -> None:
    load_full(model, weights)


def _load_encoder(model: Any, weights: Path) -> None:
    """Load a full fine-tune run's encoder weights and drop its head (the paper reloads encoder-only)."""
    load_full(model, weights, encoder_only=True)


def load_run_spec(config: Path | None = None, settings: dict | None = None,
                  overrides: Sequence[str] = (), zoo: Zoo | None = None) -> RunSpec:
    """Resolve a RunSpec from a YAML file, then explicit settings (CLI flags, as nested dicts), then
    `key=value` overrides; every problem (unknown key, bad value) is reported at once, with file:line.
    A composition with no backbone named trains on its members' (read from their manifests in `zoo`)."""
    from .config import load_yaml, merge, parse_overrides
    from .errors import ConfigError
    from .tasks import TASKS

    data, lines, source = {}, {}, "<command line>"
    if config is not None:
        data, lines = load_yaml(config)
        source = str(config)
    command_line = merge(settings or {}, parse_overrides(overrides))
    data = merge(data, command_line)
    if "task" not in data:
        raise ConfigError([f"{source}: no task given (use --task NAME or 'task:' in the config; "
                           "`stepstone tasks` lists them)"])
    spec = build(RunSpec, data, source=source, lines=lines)
    for i, task in enumerate(spec.task):
        if task not in TASKS and config is not None and "task" not in command_line:
            # from the file: name its line, and the closest task
            line = lines.get(("task", f"[{i}]"), lines.get(("task",)))
            raise ConfigError([f"{source}:{line}: {TASKS.unknown(task)}"])
        get_task(task)  # unknown task names fail here, listing the valid ones
    if spec.compose is not None:
        named = isinstance(data.get("backbone"), dict) and "name" in data["backbone"]
        spec = _members_backbone(spec, named, zoo or Zoo())
    return spec


def _members_backbone(spec: RunSpec, named: bool, zoo: Zoo) -> RunSpec:
    """`--on` without a backbone trains on the members' backbone: where their manifests say it came from
    (the local folder by its absolute path, or the hub id and revision). A backbone that is `named` and
    is not theirs is refused here, before anything is loaded; where that cannot be told without loading it
    (a local folder against a hub id), the fingerprint check after loading decides."""
    records = [(m, zoo.get(m, verify=False).manifest.backbone) for m in spec.compose.members]
    _same_backbone(records)
    member, record = records[0]
    if not named:
        if record.source is None:  # tiny, or a manifest older than recorded sources: the default
            return spec
        folder = record.source.get("local")
        if folder and not Path(folder).is_dir():
            raise StepstoneError(f"'{member}' was trained on the backbone folder '{folder}', which is not there: "
                                 "pass --backbone with where it is now (its content is checked)")
        revision = spec.backbone.revision or record.revision
        return replace(spec, backbone=replace(spec.backbone, name=record.location(), revision=revision))
    source = provenance.backbone_source(spec.backbone.name, spec.backbone.revision)
    if provenance.same_backbone(source, spec.backbone.name, record.to_json()) is False:
        given = provenance.describe({"name": spec.backbone.name, "source": source})
        hint = ("leave --backbone out to train on theirs" if record.source is not None
                else f"train on theirs: --backbone {record.name}")  # an older manifest: by its name
        raise StepstoneError(f"backbone {given} is not the one the composition members were trained on: "
                             f"'{member}' was trained on {provenance.describe(record.to_json())}; {hint}")
    return spec
