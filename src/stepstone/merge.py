"""`stepstone zoo merge`: a weight-space merge of same-shaped zoo adapters into a new zoo entry.

AdapterSoup (Chronopoulou et al. 2023): every tensor of the merged adapter is the weighted mean
sum_i w_i T_i of the members' tensors (weights given or uniform, normalised to sum 1, summed in member
order). For LoRA the A and B matrices are averaged separately, so the merged update B A is not the mean
of the members' updates B_i A_i. The members must share the method, its settings (hence tensor names and
shapes) and the backbone. Their heads are averaged too when every member has one task and the tasks are
the same (name, format, labels, choices, head shapes); otherwise the merged entry has no head (like a
head-less PEFT import: evaluate it on a retrieval task, or train a head on it with --on "Stack(NEW)").
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .artifacts import atomic_dir, check_destination, read_json, to_json
from .errors import StepstoneError
from .integrity import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_CONFIG, HEAD_WEIGHTS, check_artifact, read_config,
                        renamed)
from .manifest import (Kind, Manifest, MergeRecord, TaskRecord, TrainableRecord, head_name, write_manifest)
from .methods import METHODS, Family
from .specs import Block, Composition
from .zoo import Entry, Zoo

NOTE = "every tensor is the weighted mean of the members' tensors (AdapterSoup)"
LORA_NOTE = "; LoRA A and B are averaged separately, so the merged update is not the mean of the members' updates"


def merge(new: str, members: Sequence[str], weights: Sequence[float] | None = None,
          zoo: Zoo | None = None) -> Entry:
    """Merge zoo entries `members` (two or more) into the new zoo entry `new`; returns it, read back and verified.
    Everything is checked before anything is written; the entry appears in one step or not at all."""
    zoo = zoo or Zoo()
    destination = zoo.path(new)  # the name rule
    members = tuple(members)
    if len(members) < 2:
        raise StepstoneError(f"zoo merge needs at least two members (got {len(members)}: {', '.join(members) or 'none'})")
    if new in members:
        raise StepstoneError(f"zoo merge: the new entry '{new}' cannot also be a member")
    try:
        mix = Composition(Block.AVERAGE, members, None if weights is None else tuple(weights)).mix
    except ValueError as err:
        raise StepstoneError(f"zoo merge: {err}") from None
    check_destination(destination)
    if destination.exists() or destination.is_symlink():
        raise StepstoneError(f"'{destination}' already exists; pick another name or remove it first")
    entries = [zoo.get(m) for m in members]  # hashes verified
    for entry in entries:
        _check_mergeable(entry, entries[0])
        check_artifact(entry.path, entry.manifest)
    adapter = _mean([_tensors(e.path / ADAPTER_WEIGHTS, _saved_name(e.path / ADAPTER_CONFIG), new) for e in entries],
                    mix, members, ADAPTER_WEIGHTS)
    heads = _same_task(entries)
    head = None
    if heads:
        head = _mean([_tensors(e.path / HEAD_WEIGHTS, _saved_name(e.path / HEAD_CONFIG), new) for e in entries],
                     mix, members, HEAD_WEIGHTS)
    manifest = _manifest(new, entries, mix, adapter, head)
    with atomic_dir(destination) as tmp:
        _write(tmp, entries[0].path, ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter, new)
        if head is not None:
            _write(tmp, entries[0].path, HEAD_CONFIG, HEAD_WEIGHTS, head, new)
        write_manifest(tmp, manifest)
    merged = zoo.get(new)
    check_artifact(merged.path, merged.manifest)
    return merged


def _check_mergeable(entry: Entry, first: Entry) -> None:
    """One line naming the first difference from the first member."""
    m, f = entry.manifest, first.manifest
    if m.kind is not Kind.ADAPTER or m.composition is not None:
        raise StepstoneError(f"zoo merge: '{entry.name}' is a {m.kind.value}, not a zoo adapter: only zoo adapters merge")
    if METHODS.get(m.method.kind).family is Family.FULL:
        raise StepstoneError(f"zoo merge: '{entry.name}' is a full fine-tune: only adapters merge")
    if m.method.kind != f.method.kind:
        raise StepstoneError(f"zoo merge: '{entry.name}' is a {m.method.kind} adapter, '{first.name}' a "
                             f"{f.method.kind} adapter: members must share the method")
    differ = sorted(k for k in set(m.method.settings) | set(f.method.settings)
                    if m.method.settings.get(k) != f.method.settings.get(k))
    if differ:
        key = differ[0]
        raise StepstoneError(f"zoo merge: '{entry.name}' has {m.method.kind} setting {key}="
                             f"{json.dumps(m.method.settings.get(key))}, '{first.name}' has {key}="
                             f"{json.dumps(f.method.settings.get(key))}: members must share the method's settings")
    if m.backbone.fingerprint != f.backbone.fingerprint:
        raise StepstoneError(f"zoo merge: '{entry.name}' was trained on backbone '{m.backbone.name}' (fingerprint "
                             f"{m.backbone.fingerprint}), '{first.name}' on '{f.backbone.name}' (fingerprint "
                             f"{f.backbone.fingerprint}): members must share the backbone")


def _saved_name(config: Path) -> str:
    return read_config(config).get("name")


def _tensors(file: Path, saved: str, new: str) -> dict:
    """The file's tensors, named as the merged entry's (the owner segment `saved` -> `new`)."""
    from safetensors.torch import load_file

    tensors = load_file(str(file))
    names = renamed({k: k for k in tensors}, saved, new)  # old key -> new key, via the values
    return {new_key: tensors[old_key] for new_key, old_key in names.items()}


def _mean(members: list[dict], mix: tuple[float, ...], names: tuple[str, ...], file: str) -> dict:
    """sum_i w_i T_i per tensor, in member order; refuses tensors whose names or shapes differ."""
    first = members[0]
    for name, tensors in zip(names[1:], members[1:]):
        differ = sorted(set(first) ^ set(tensors)) or sorted(k for k in first if first[k].shape != tensors[k].shape)
        if differ:
            raise StepstoneError(f"zoo merge: {file} of '{name}' and of '{names[0]}' differ at tensor {differ[0]}: "
                                 f"members must have the same tensors")
    out = {}
    for key in sorted(first):
        total = mix[0] * first[key]
        for weight, tensors in zip(mix[1:], members[1:]):
            total = total + weight * tensors[key]
        out[key] = total.contiguous()
    return out


def _same_task(entries: list[Entry]) -> bool:
    """Heads average when every member has exactly one task, the same one, with same-shaped head tensors."""
    def key(task: TaskRecord) -> tuple:
        return task.name, task.format, task.labels, task.num_choices

    tasks = [e.manifest.tasks for e in entries]
    if any(len(t) != 1 for t in tasks) or len({key(t[0]) for t in tasks}) != 1:
        return False
    from .integrity import tensor_shapes

    shapes = [sorted(renamed(tensor_shapes(e.path / HEAD_WEIGHTS), _saved_name(e.path / HEAD_CONFIG), "h").items())
              for e in entries]
    return all(s == shapes[0] for s in shapes)


def _write(folder: Path, source: Path, config: str, weights: str, tensors: dict, new: str) -> None:
    """The first member's config under the new name, and the merged tensors."""
    from safetensors.torch import save_file

    data = read_json(source / config)
    data["name"] = new
    (folder / config).write_text(to_json(data), encoding="utf-8")
    save_file(tensors, str(folder / weights), metadata={"format": "pt"})


def _manifest(new: str, entries: list[Entry], mix: tuple[float, ...], adapter: dict, head: dict | None) -> Manifest:
    """A zoo-entry manifest: the members' backbone and method; the first member's task (renamed head) and
    spec when heads were merged, else none (spec: backbone + method only); no dev metrics (never evaluated)."""
    first = entries[0].manifest
    parameters = sum(t.numel() for t in (*adapter.values(), *(head or {}).values()))
    backbone_parameters = first.trainable.backbone_parameters if first.trainable else first.backbone.parameters
    lora = METHODS.get(first.method.kind).family is Family.LORA
    if head is not None:
        tasks = (replace(first.task, head=head_name(new, first.task.name, 0)),)
        task, spec = tasks[0], {**first.spec, "name": new}
    else:
        tasks, task = (), TaskRecord("-", None)
        spec = {"backbone": first.spec.get("backbone"), "method": first.spec.get("method")}
    more: dict[str, Any] = {}
    if backbone_parameters:
        more["trainable"] = TrainableRecord(parameters, 100.0 * parameters / backbone_parameters, backbone_parameters)
    return Manifest.new(
        kind=Kind.ADAPTER, name=new, backbone=first.backbone, method=first.method, task=task, tasks=tasks,
        composition=None, mode="adapter", spec=spec, seed=None, data=None,
        metrics={"dev": {}, "best_epoch": None, "main": first.metrics.main if head is not None else None},
        history=[], merged_from=MergeRecord(tuple(e.name for e in entries), mix, NOTE + (LORA_NOTE if lora else ""),
                                            head is not None), **more)
