"""Manifests as typed records, and the one layout of an artifact folder.

A manifest is read (`read_manifest` / `Manifest.from_json`: validated, migrated to the current format in
memory) or made (`Manifest.new`: what train_run and `stepstone import` save); either way library code reads
its attributes (`manifest.backbone.spec()`, `manifest.composition.members`), never strings. Old files are
never rewritten: their hashes are recorded elsewhere (a run's copy of a member, a checkpoint's inputs).

A `Manifest` is also a read-only Mapping over its JSON as saved (`manifest["metrics"]["dev"]`), for tests
and printing; `to_json()` is the manifest in the current format (what saving it now would write; the same
JSON for a file of the current format).

Format versions (FORMAT_VERSION):
  1: the first.
  2: `spec.method` holds only `kind` and that kind's own settings block (1 held every method's block);
     `backbone` always records `quantize` and `attention` (1 left them out before they existed: none, sdpa).
Optional fields added since need no new version: a file without one reads it as None (`chain`, issue 16: the
tasks a run with init_from was trained on, in order).
"""
from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

from .artifacts import (MANIFEST, OUTPUTS, PICKLE_SUFFIXES, READ_SUFFIXES, _is_output, _walk, artifact_files,
                        library_versions, read_json, sha256, to_json)
from .composition import BLOCKS, LAYERS, Semantics, training_mode
from .errors import StepstoneError
from .methods import METHODS
from .specs import NAME_PATTERN, NAME_RULE, Attention, BackboneSpec, Block, Composition, Quantize

FORMAT_VERSION = 2
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class ArtifactLayout:
    """Where each part of an artifact folder lives (a zoo entry, a composed run, a full fine-tune run)."""

    path: Path

    CONFIG = "config.yaml"
    TRAIN_LOG = "train_log.jsonl"
    FULL_WEIGHTS = "model.safetensors"
    TARGET, MEMBERS, HEADS = "target", "members", "heads"
    # the folders of a composition's trained layer (composition.LAYERS names them): AdapterFusion's, and
    # the gates of Fuse over LoRA members (lora_fusion_config.json + lora_fusion.safetensors)
    FUSION, LORA_FUSION = "fusion", "lora_fusion"

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def train_log(self) -> Path:
        return self.path / self.TRAIN_LOG

    @property
    def full_weights(self) -> Path:
        return self.path / self.FULL_WEIGHTS

    @property
    def target(self) -> Path:
        """A composed run's own adapter (a zoo entry's adapter is the folder itself)."""
        return self.path / self.TARGET

    @property
    def members(self) -> Path:
        return self.path / self.MEMBERS

    def member(self, name: str) -> Path:
        """A composed run's copy of zoo member `name` (runs are self-contained)."""
        return self.members / name

    @property
    def fusion(self) -> Path:
        return self.path / self.FUSION

    def layer(self, folder: str) -> Path:
        """The folder of a composition's trained layer (`composition.TrainedLayer.folder`)."""
        return self.path / folder

    def head(self, task: str) -> Path:
        """Further multi-task heads (the first task's head sits with the adapter)."""
        return self.path / self.HEADS / task

    @property
    def outputs(self) -> Path:
        """What `evaluate` writes into an artifact after its save: no part of it, never hashed."""
        return self.path / OUTPUTS


def head_name(run: str, task: str, index: int) -> str:
    """The first task's head is named like the adapter (the adapters library pairs them); further
    multi-task heads are RUN_TASK."""
    return run if index == 0 else f"{run}_{task}"


def chain_of(manifest: "Manifest") -> tuple[str, ...]:
    """The tasks an artifact's weights were trained on, in order: its recorded `chain` (a run with init_from),
    else one step. A step is a run's tasks joined by '+' (a multi-task run trains them together: "anli+sst2");
    a head-less import has no task and is its own name."""
    if manifest.chain is not None:
        return manifest.chain
    tasks = [t.name for t in manifest.tasks]
    return ("+".join(tasks) if tasks else manifest.name,)


# ------------------------------------------------------------------------------------------------ records
class Kind(str, Enum):
    ADAPTER = "adapter"  # a zoo entry
    RUN = "run"  # a composed or full fine-tune run


def _copy(value: Any) -> Any:
    return copy.deepcopy(value)


@dataclass(frozen=True)
class BackboneRecord:
    """The backbone an artifact was trained on; `fingerprint` is checked on load."""

    name: str
    fingerprint: str
    revision: str | None = None
    quantize: Quantize = Quantize.NONE
    attention: Attention = Attention.SDPA
    parameters: int | None = None
    source: dict | None = None  # hub commit or a local folder's content hash (not for tiny)

    @classmethod
    def from_json(cls, raw: dict) -> "BackboneRecord":
        return cls(raw["name"], raw["fingerprint"], raw.get("revision"), Quantize(raw.get("quantize", "none")),
                   Attention(raw.get("attention", "sdpa")), raw.get("parameters"), raw.get("source"))

    @classmethod
    def of(cls, backbone: Any) -> "BackboneRecord":
        """The record of a loaded `stepstone.backbone.Backbone`."""
        return cls(backbone.spec.name, backbone.fingerprint, backbone.spec.revision, backbone.spec.quantize,
                   backbone.spec.attention, backbone.num_parameters, backbone.source)

    def to_json(self) -> dict:
        record = {"name": self.name, "revision": self.revision, "fingerprint": self.fingerprint,
                  "parameters": self.parameters, "quantize": self.quantize.value, "attention": self.attention.value}
        if self.source is not None:
            record["source"] = _copy(self.source)
        return record

    def location(self) -> str:
        """Where to load it from: the absolute folder it was loaded from (the recorded name may be relative
        to another working directory), else its name (tiny or a hub id)."""
        return (self.source or {}).get("local") or self.name

    def spec(self, name: str | None = None) -> BackboneSpec:
        """The BackboneSpec it was trained with (revision, quantisation, attention), loading from `name`
        when given (e.g. `location()`, or where the user says it is now)."""
        return BackboneSpec(name or self.name, self.revision, self.quantize, self.attention)


@dataclass(frozen=True)
class MethodRecord:
    kind: str  # a registered method (stepstone.methods.METHODS)
    settings: dict

    @classmethod
    def from_json(cls, raw: dict) -> "MethodRecord":
        return cls(raw["kind"], _copy(raw["settings"]))

    @classmethod
    def of(cls, spec: Any) -> "MethodRecord":
        """The record of a `MethodSpec`: its kind and the settings that matter for it."""
        return cls(spec.kind, spec.settings())

    def to_json(self) -> dict:
        return {"kind": self.kind, "settings": _copy(self.settings)}


@dataclass(frozen=True)
class TaskRecord:
    """A task head of the artifact. An imported head-less adapter's `task` is name '-' with no format."""

    name: str
    head: str | None
    format: str | None = None
    labels: tuple[str, ...] = ()
    num_choices: int | None = None
    train_language: str | None = None

    @classmethod
    def from_json(cls, raw: dict) -> "TaskRecord":
        return cls(raw["name"], raw.get("head"), raw.get("format"), tuple(raw.get("labels", [])),
                   raw.get("num_choices"), raw.get("train_language"))

    @classmethod
    def of(cls, task: Any, head: str) -> "TaskRecord":
        return cls(task.name, head, task.format.value, tuple(task.labels), task.num_choices, task.train_language)

    def to_json(self) -> dict:
        return {"name": self.name, "format": self.format, "labels": list(self.labels), "head": self.head,
                "num_choices": self.num_choices, "train_language": self.train_language}

    def registered(self) -> Any:
        """The registered TaskSpec, with the labels the artifact was trained with where the task's labels come
        from its training data."""
        from dataclasses import replace

        from .tasks import get_task

        task = get_task(self.name)
        return replace(task, labels=self.labels) if task.open_labels else task


@dataclass(frozen=True)
class CompositionRecord:
    block: Block
    members: tuple[str, ...]
    semantics: str  # a composition.Semantics value
    setup: str | None = None  # adapters' setup, as text
    member_methods: dict[str, MethodRecord] | None = None  # older manifests: read from the member copies
    weights: tuple[float, ...] | None = None  # a weighted block's normalised member weights (None: uniform)

    @classmethod
    def from_json(cls, raw: dict) -> "CompositionRecord":
        methods, weights = raw.get("member_methods"), raw.get("weights")
        return cls(Block(raw["block"]), tuple(raw["members"]), raw["semantics"], raw.get("setup"),
                   None if methods is None else {k: MethodRecord.from_json(v) for k, v in methods.items()},
                   None if weights is None else tuple(weights))

    def to_json(self) -> dict:
        record = {"block": self.block.value, "members": list(self.members), "semantics": self.semantics,
                  "setup": self.setup}
        if self.member_methods is not None:
            record["member_methods"] = {k: v.to_json() for k, v in self.member_methods.items()}
        if self.weights is not None:  # absent where none were given (and in manifests older than Average)
            record["weights"] = list(self.weights)
        return record

    def composition(self) -> Composition:
        return Composition(self.block, self.members, self.weights)


@dataclass(frozen=True)
class MergeRecord:
    """Where a merged zoo entry (`stepstone zoo merge`) came from: its members, their normalised weights,
    and how the tensors were combined (`note`)."""

    members: tuple[str, ...]
    weights: tuple[float, ...]
    note: str
    heads: bool  # whether the members' heads were averaged too (else the entry has none)

    @classmethod
    def from_json(cls, raw: dict) -> "MergeRecord":
        return cls(tuple(raw["members"]), tuple(raw["weights"]), raw.get("note", ""), bool(raw.get("heads")))

    def to_json(self) -> dict:
        return {"members": list(self.members), "weights": list(self.weights), "note": self.note,
                "heads": self.heads}


@dataclass(frozen=True)
class DataRecord:
    train_examples: int | None = None
    train_features: int | None = None
    dev_examples: int | None = None
    by_task: dict | None = None  # multi-task runs
    sources: dict | None = None  # files or hub datasets read (toy data have none)

    @classmethod
    def from_json(cls, raw: dict) -> "DataRecord":
        return cls(raw.get("train_examples"), raw.get("train_features"), raw.get("dev_examples"),
                   raw.get("by_task"), raw.get("sources"))

    def to_json(self) -> dict:
        record = {"train_examples": self.train_examples, "train_features": self.train_features,
                  "dev_examples": self.dev_examples}
        record.update({k: _copy(v) for k, v in (("by_task", self.by_task), ("sources", self.sources)) if v})
        return record


@dataclass(frozen=True)
class TrainableRecord:
    parameters: int
    percent_of_backbone: float
    backbone_parameters: int

    @classmethod
    def from_json(cls, raw: dict) -> "TrainableRecord":
        return cls(raw["parameters"], raw["percent_of_backbone"], raw["backbone_parameters"])

    def to_json(self) -> dict:
        return {"parameters": self.parameters, "percent_of_backbone": self.percent_of_backbone,
                "backbone_parameters": self.backbone_parameters}


@dataclass(frozen=True)
class MetricsRecord:
    dev: dict  # metric -> value at the selected epoch
    best_epoch: int | None = None
    main: str | None = None
    dev_by_task: dict | None = None  # multi-task runs

    @classmethod
    def from_json(cls, raw: dict) -> "MetricsRecord":
        return cls(_copy(raw.get("dev", {})), raw.get("best_epoch"), raw.get("main"), raw.get("dev_by_task"))

    def to_json(self) -> dict:
        record = {"dev": _copy(self.dev), "best_epoch": self.best_epoch, "main": self.main}
        if self.dev_by_task is not None:
            record["dev_by_task"] = _copy(self.dev_by_task)
        return record

    @property
    def main_dev(self) -> float | None:
        return self.dev.get(self.main)


# ------------------------------------------------------------------------------------------------ manifest
@dataclass(frozen=True, eq=False)
class Manifest(Mapping):
    """One artifact's manifest. Attributes are the typed records (current format); as a Mapping it is the
    JSON as saved (read-only: values are copies)."""

    kind: Kind
    name: str
    created: str | None
    backbone: BackboneRecord
    method: MethodRecord
    task: TaskRecord  # the first task (a head-less import: name '-')
    tasks: tuple[TaskRecord, ...]
    composition: CompositionRecord | None
    init_from: dict | None  # {"path", "name"} of the artifact it started from (an adapter, or a full run)
    chain: tuple[str, ...] | None  # the tasks it was trained on in order, with init_from (see `chain_of`)
    mode: str  # a registered training mode (MODES below): adapter | fusion | lora-fusion | full
    spec: dict  # the resolved RunSpec (config.to_dict)
    seed: int | None
    data: DataRecord | None
    trainable: TrainableRecord | None
    metrics: MetricsRecord
    history: tuple[dict, ...]
    learning: dict | None  # stepstone.health's verdict (absent in imports)
    train_seconds: float | None
    peak_rss_mb: float | None
    processes: int | None
    imported: dict | None  # where an imported adapter came from
    merged_from: MergeRecord | None  # the members of a merged entry (`stepstone zoo merge`)
    format_version: int  # of the file as saved (the records are migrated to FORMAT_VERSION)
    versions: dict  # library versions that wrote it
    files: dict  # relative path -> sha256 of every file of the artifact
    weights_bytes: int | None
    _json: dict = field(repr=False)  # in the current format
    _saved: dict = field(repr=False)  # as saved

    # -- the Mapping over the saved JSON (tests, printing); library code reads the attributes
    def __getitem__(self, key: str) -> Any:
        return _copy(self._saved[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._saved)

    def __len__(self) -> int:
        return len(self._saved)

    def to_json(self) -> dict:
        """The manifest in the current format (FORMAT_VERSION): what saving it now would write."""
        return _copy(self._json)

    @classmethod
    def from_json(cls, raw: Any, where: str = MANIFEST) -> "Manifest":
        """Check `raw` (the JSON of a manifest file named `where` in messages), migrate it to the current
        format in memory, and type it. Every problem is one StepstoneError line naming `where` and the field."""
        version = raw.get("format_version") if isinstance(raw, dict) else None
        if not isinstance(version, int) or isinstance(version, bool):
            raise StepstoneError(f"{where}: no integer 'format_version': not a stepstone manifest")
        if version > FORMAT_VERSION:
            raise StepstoneError(f"{where}: format version {version} is newer than this stepstone understands "
                                 f"({FORMAT_VERSION}); upgrade stepstone")
        problems = schema_problems(raw)
        if problems:
            raise StepstoneError(f"{where}: not a valid manifest: {'; '.join(problems)}")
        for relative, digest in raw["files"].items():
            parts = Path(relative).parts
            if not parts or Path(relative).is_absolute() or ".." in parts or relative == MANIFEST \
                    or _is_output(relative) or Path(relative).suffix in PICKLE_SUFFIXES \
                    or not isinstance(digest, str) or not _SHA256.match(digest):
                raise StepstoneError(f"{where}: bad weights entry {relative!r} (expected a relative path to a "
                                     f"file inside the artifact, not a pickle, and its sha256)")
        problems = name_problems(raw)
        if problems:
            raise StepstoneError(f"{where}: {problems[0]}")
        current = migrate(raw)
        problems = record_problems(current)
        if problems:
            raise StepstoneError(f"{where}: not a valid manifest: {'; '.join(problems)}")
        return cls._typed(current, raw)

    @classmethod
    def _typed(cls, current: dict, saved: dict) -> "Manifest":
        g = current.get
        composition, data, trainable = g("composition"), g("data"), g("trainable")
        return cls(
            kind=Kind(current["kind"]), name=current["name"], created=g("created"),
            backbone=BackboneRecord.from_json(current["backbone"]), method=MethodRecord.from_json(current["method"]),
            task=TaskRecord.from_json(current["task"]),
            tasks=tuple(TaskRecord.from_json(t) for t in current["tasks"]),
            composition=None if composition is None else CompositionRecord.from_json(composition),
            init_from=_copy(g("init_from")), chain=None if g("chain") is None else tuple(g("chain")),
            mode=current["mode"], spec=_copy(current["spec"]), seed=g("seed"),
            data=None if data is None else DataRecord.from_json(data),
            trainable=None if trainable is None else TrainableRecord.from_json(trainable),
            metrics=MetricsRecord.from_json(g("metrics") or {}), history=tuple(_copy(g("history") or [])),
            learning=_copy(g("learning")), train_seconds=g("train_seconds"), peak_rss_mb=g("peak_rss_mb"),
            processes=g("processes"), imported=_copy(g("imported")),
            merged_from=None if g("merged_from") is None else MergeRecord.from_json(current["merged_from"]),
            format_version=saved["format_version"],
            versions=_copy(g("versions") or {}), files=dict(current["files"]), weights_bytes=g("weights_bytes"),
            _json=_copy(current), _saved=_copy(saved))

    @classmethod
    def new(cls, *, kind: Kind, name: str, backbone: BackboneRecord, method: MethodRecord,
            tasks: tuple[TaskRecord, ...], mode: Any, spec: dict, composition: CompositionRecord | None = None,
            task: TaskRecord | None = None, **more: Any) -> "Manifest":
        """A manifest about to be saved (train_run, `stepstone import`): stamped with the time, the format
        and the library versions, and checked like a read one; `write_manifest` adds the file hashes.
        `more`: the other top-level fields as JSON (init_from, chain, seed, data, trainable, metrics, history,
        learning, train_seconds, peak_rss_mb, processes, imported, merged_from), records given as records."""
        raw = {
            "kind": Kind(kind).value, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "backbone": backbone.to_json(), "method": method.to_json(),
            "task": (task or tasks[0]).to_json(), "tasks": [t.to_json() for t in tasks],
            "composition": None if composition is None else composition.to_json(),
            "mode": getattr(mode, "value", mode), "spec": _copy(spec),
            **{k: v.to_json() if hasattr(v, "to_json") else _copy(v) for k, v in more.items()},
            "format_version": FORMAT_VERSION, "versions": library_versions(), "files": {}, "weights_bytes": 0,
        }
        return cls.from_json(raw, f"new manifest of '{name}'")

    def with_files(self, folder: Path) -> "Manifest":
        """This manifest with the sha256 of every file of the artifact in `folder` (weights, adapter / head /
        fusion configs, config.yaml, the train log, the manifests of member copies), so editing any of them is
        caught on load; `weights_bytes` is the size of the weights alone."""
        files = {f: sha256(folder / f) for f in artifact_files(folder)}
        raw = {**self.to_json(), "format_version": FORMAT_VERSION, "versions": library_versions(), "files": files,
               "weights_bytes": sum((folder / f).stat().st_size for f in files if f.endswith(".safetensors"))}
        return Manifest.from_json(raw, str(folder / MANIFEST))


# ------------------------------------------------------------------------------------------------ migration
def migrate(raw: dict) -> dict:
    """A manifest of any older format as the current format would hold it (a copy; files are never rewritten:
    their hashes are recorded)."""
    current = _copy(raw)
    for version in range(current["format_version"], FORMAT_VERSION):
        current = _MIGRATIONS[version](current)
        current["format_version"] = version + 1
    return current


def _v1_to_v2(manifest: dict) -> dict:
    method = manifest["spec"].get("method")
    if isinstance(method, dict) and "kind" in method:  # only the kind's own settings block
        kind = method["kind"]
        manifest["spec"]["method"] = {"kind": kind, **({kind: method[kind]} if kind in method else {})}
    backbone = manifest["backbone"]
    backbone.setdefault("quantize", Quantize.NONE.value)  # written before quantisation and attention existed
    backbone.setdefault("attention", Attention.SDPA.value)
    return manifest


_MIGRATIONS = {1: _v1_to_v2}  # version -> its manifest in the next version


# ------------------------------------------------------------------------------------------------ checks
# What loading relies on, checked before anything else is read: field -> a JSON type, a tuple of allowed
# values, or a dict of required sub-fields (other fields are free: older and newer writers add some).
def mode_names() -> tuple[str, ...]:
    """The training modes a manifest may name: "adapter", every method's own (`Method.train_mode`) and every
    composition layer's (`composition.LAYERS`)."""
    modes = ("adapter", *(METHODS.get(m).train_mode for m in METHODS.in_order()), *(l.mode for l in LAYERS.values()))
    return tuple(dict.fromkeys(modes))


SCHEMA: dict = {
    "format_version": int, "kind": ("adapter", "run"), "name": str, "mode": mode_names(),
    "backbone": {"name": str, "fingerprint": str}, "method": {"kind": tuple(METHODS.in_order()), "settings": dict},
    "task": {"name": str}, "tasks": list, "spec": dict, "files": dict,
}


def schema_problems(manifest: Any, schema: dict = SCHEMA, where: str = "") -> list[str]:
    """What in `manifest` does not match `schema`: one phrase per problem, e.g. "'backbone.name' is missing"."""
    if not isinstance(manifest, dict):
        return [f"'{where or 'manifest'}' must be an object, got {type(manifest).__name__}"]
    problems = []
    for key, rule in schema.items():
        name = f"{where}.{key}" if where else key
        if key not in manifest:
            problems.append(f"'{name}' is missing")
        elif isinstance(rule, dict):
            problems += schema_problems(manifest[key], rule, name)
        elif isinstance(rule, tuple):
            if manifest[key] not in rule:
                problems.append(f"'{name}' must be one of {', '.join(rule)}, got {manifest[key]!r}")
        elif not isinstance(manifest[key], rule) or (rule is int and isinstance(manifest[key], bool)):
            problems.append(f"'{name}' must be {_JSON_TYPES[rule]}, got {json.dumps(manifest[key])[:40]}")
    return problems


_JSON_TYPES = {int: "an integer", str: "a string", dict: "an object", list: "a list"}


def record_problems(manifest: dict) -> list[str]:
    """The fields the typed records read that the schema and the name rules leave open (in the current format)."""
    problems = []
    for key, enum in (("quantize", Quantize), ("attention", Attention)):
        value = manifest["backbone"].get(key)
        if value not in [e.value for e in enum]:
            problems.append(f"'backbone.{key}' must be one of {', '.join(e.value for e in enum)}, got "
                            f"{json.dumps(value)[:40]}")
    for key, kind in (("metrics", dict), ("data", dict), ("trainable", dict), ("init_from", dict),
                      ("history", list), ("composition", dict)):
        value = manifest.get(key)
        if value is not None and not isinstance(value, kind):
            problems.append(f"'{key}' must be {_JSON_TYPES[kind]}, got {json.dumps(value)[:40]}")
    methods = (manifest.get("composition") or {}).get("member_methods") or {}
    if isinstance(methods, dict) and not all(
            isinstance(m, dict) and m.get("kind") in METHODS.in_order() and isinstance(m.get("settings"), dict)
            for m in methods.values()):
        problems.append(f"'composition.member_methods' must be an object of method records, got "
                        f"{json.dumps(methods)[:40]}")
    problems += _weights_problems(manifest)
    chain = manifest.get("chain")
    if chain is not None and not (isinstance(chain, list) and chain
                                  and all(isinstance(step, str) and step for step in chain)):
        problems.append(f"'chain' must be a non-empty list of task names, got {json.dumps(chain)[:40]}")
    if isinstance(manifest.get("trainable"), dict):
        problems += [f"'trainable.{k}' is missing" for k in ("parameters", "percent_of_backbone",
                                                               "backbone_parameters") if k not in manifest["trainable"]]
    return problems


def _weights_problems(manifest: dict) -> list[str]:
    """Member weights (a weighted composition's, a merge's): one finite number > 0 per member."""
    problems = []
    for key in ("composition", "merged_from"):
        record = manifest.get(key)
        if record is None:
            continue
        if key == "merged_from" and not (
                isinstance(record, dict) and isinstance(record.get("members"), list)):
            problems.append(f"'merged_from' must be an object with a 'members' list, got {json.dumps(record)[:40]}")
            continue
        weights = record.get("weights") if isinstance(record, dict) else None
        if weights is None and key == "composition":
            continue
        members = record.get("members") if isinstance(record, dict) else None
        if not isinstance(weights, list) or not isinstance(members, list) or len(weights) != len(members) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0 for w in weights):
            problems.append(f"'{key}.weights' must be one finite number > 0 per member, got {json.dumps(weights)[:40]}")
    return problems


def name_problems(manifest: dict) -> list[str]:
    """Names a manifest gives that become path components or adapter keys (its own name, task names,
    their heads, composition members) and do not follow the name rule, e.g. "invalid member name '../x'
    in 'composition.members[0]': use ...". Heads must be the ones `head_name` gives (every writer names
    them so), which also keeps them free of '.' and '/'. Also the other task and composition fields loading
    reads as they are (a task's format and labels, the members' method records), so an edited manifest is one
    line, not a TypeError deep in a loader."""
    from .integrity import HEAD_TYPES

    problems = []

    def check(value: Any, what: str, where: str) -> bool:
        if not isinstance(value, str) or not NAME_PATTERN.match(value):
            problems.append(f"invalid {what} {value!r} in '{where}': use {NAME_RULE}")
            return False
        return True

    name_ok = check(manifest["name"], "name", "name")
    for i, record in enumerate(manifest["tasks"]):
        if not isinstance(record, dict):
            problems.append(f"'tasks[{i}]' must be an object")
            continue
        if check(record.get("name"), "task name", f"tasks[{i}].name") and name_ok:
            expected = head_name(manifest["name"], record["name"], i)
            if record.get("head") != expected:
                problems.append(f"invalid head name {record.get('head')!r} in 'tasks[{i}].head' (expected "
                                f"'{expected}')")
        fmt, labels = record.get("format"), record.get("labels", [])
        if not isinstance(fmt, str) or fmt not in HEAD_TYPES:
            problems.append(f"'tasks[{i}].format' must be one of {', '.join(HEAD_TYPES)}, got {json.dumps(fmt)[:40]}")
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            problems.append(f"'tasks[{i}].labels' must be a list of strings, got {json.dumps(labels)[:40]}")
    if manifest["tasks"] and isinstance(manifest["tasks"][0], dict) and \
            any(manifest["task"].get(k) != manifest["tasks"][0].get(k) for k in ("name", "head")):
        problems.append(f"'task' ({manifest['task'].get('name')!r}) differs from 'tasks[0]'")
    composition = manifest.get("composition")
    if isinstance(composition, dict):
        members = composition.get("members")
        if not isinstance(members, list) or not members:
            problems.append(f"'composition.members' must be a non-empty list, got {json.dumps(members)[:40]}")
        else:
            for i, member in enumerate(members):
                check(member, "member name", f"composition.members[{i}]")
        problems += _composition_mode_problems(composition, manifest["mode"], manifest["method"]["kind"])
        recorded = composition.get("member_methods")
        if recorded is not None and not (isinstance(recorded, dict)
                                         and all(isinstance(v, dict) for v in recorded.values())):
            problems.append(f"'composition.member_methods' must be an object of method records, got "
                            f"{json.dumps(recorded)[:40]}")
    elif manifest["kind"] == "run" and manifest["mode"] != "full":
        problems.append("'composition' is missing from a composed run")
    return problems


def _composition_mode_problems(composition: dict, mode: str, method: str) -> list[str]:
    """The block, the semantics and the mode agree: the mode decides which layer's files loading reads, and
    it is the semantics' (composition.training_mode), among the modes of the block's semantics."""
    block, semantics = composition.get("block"), composition.get("semantics")
    problems = []
    if block not in [b.value for b in Block]:
        problems.append(f"'composition.block' must be one of {', '.join(b.value for b in Block)}, got "
                        f"{json.dumps(block)[:40]}")
    elif mode not in {training_mode(s, method) for s in BLOCKS[Block(block)].setups}:
        problems.append(f"'composition.block' is {block!r}, but 'mode' is {mode!r}")
    if semantics not in [m.value for m in Semantics]:
        problems.append(f"'composition.semantics' must be one of {', '.join(m.value for m in Semantics)}, got "
                        f"{json.dumps(semantics)[:40]}")
    elif not problems and training_mode(Semantics(semantics), method) != mode:
        problems.append(f"'composition.semantics' is {semantics!r}, but 'mode' is {mode!r}")
    return problems


# ------------------------------------------------------------------------------------------------ files
def read_manifest(folder: Path, verify: bool = True) -> Manifest:
    """Read and check a manifest (JSON, format version, schema, file entries, the names that become paths
    and adapter keys), migrated to the current format; with `verify`, also check every file it lists against
    its hash and refuse a folder that holds a link, a pickle, or an unlisted weights or config file."""
    path = folder / MANIFEST
    if not path.is_file():
        raise StepstoneError(f"'{folder}' is not a stepstone artifact: {MANIFEST} is missing")
    manifest = Manifest.from_json(read_json(path), str(path))
    if verify:
        verify_files(folder, manifest.files)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Write `manifest`, with the hashes of the files in `folder` (`Manifest.with_files`), as manifest.json
    (sorted keys); returns what was written."""
    full = manifest.with_files(folder)
    (folder / MANIFEST).write_text(to_json(full.to_json()), encoding="utf-8")
    return full


def verify_files(folder: Path, listed: dict) -> None:
    """Every file `listed` (relative path -> sha256) is in `folder` with that hash; no pickle, link or unlisted
    weights or config file is."""
    present = _walk(folder)
    pickles = [f for f in present if Path(f).suffix in PICKLE_SUFFIXES]
    if pickles:
        raise StepstoneError(f"'{folder}' holds pickle-format file(s) {', '.join(pickles[:3])}: "
                             f"refusing to load it "
                             f"(stepstone reads safetensors only; remove them if the rest is trusted)")
    # Manifests written before every file was hashed list only the weights: their configs cannot be
    # verified, so only unlisted weights are refused there.
    complete = any(not f.endswith(".safetensors") for f in listed)
    readable = READ_SUFFIXES if complete else (".safetensors",)
    unlisted = [f for f in present if f != MANIFEST and not _is_output(f) and f not in listed
                and f.endswith(readable)]
    if unlisted:
        what = "weights file" if unlisted[0].endswith(".safetensors") else "file"
        raise StepstoneError(f"'{folder}': {what} {unlisted[0]} is not in the manifest (a file that "
                             f"cannot be verified is not loaded)")
    for relative, expected in listed.items():
        file = folder / relative
        what = "weights file" if relative.endswith(".safetensors") else "file"
        if not file.is_file():
            raise StepstoneError(f"'{folder}': {what} {relative} is missing")
        if sha256(file) != expected:
            if what == "file":
                raise StepstoneError(f"'{folder}': file {relative} was edited or is corrupted (sha256 "
                                     f"mismatch; the manifest's hash is of the file as saved)")
            raise StepstoneError(f"'{folder}': weights file {relative} is corrupted (sha256 mismatch)")
