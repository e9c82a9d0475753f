"""What a run is, resolved before anything trains: its RunSpec from YAML, flags and overrides (a composition
on its members' backbone), and the process settings it runs with."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from .. import provenance
from ..config import build
from ..errors import StepstoneError
from ..manifest import BackboneRecord
from ..specs import RunSpec
from ..tasks import get_task
from ..zoo import Zoo


def set_threads(threads: int | None) -> None:
    """Torch CPU threads: the spec's value, else $STEPSTONE_THREADS, else torch's default."""
    import torch

    value = threads or int(os.environ.get("STEPSTONE_THREADS", "0") or 0)
    if value > 0:
        torch.set_num_threads(value)


def load_run_spec(config: Path | None = None, settings: dict | None = None,
                  overrides: Sequence[str] = (), zoo: Zoo | None = None) -> RunSpec:
    """Resolve a RunSpec from a YAML file, then explicit settings (CLI flags, as nested dicts), then
    `key=value` overrides; every problem (unknown key, bad value) is reported at once, with file:line.
    A composition with no backbone named trains on its members' (read from their manifests in `zoo`); a run
    with init_from and no method or backbone named, on init_from's (chains.init_defaults)."""
    from ..config import load_yaml, merge, parse_overrides
    from ..errors import ConfigError
    from ..tasks import TASKS

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
    named = isinstance(data.get("backbone"), dict) and "name" in data["backbone"]
    if spec.compose is not None:
        spec = _members_backbone(spec, named, zoo or Zoo())
    if spec.init_from is not None:  # a chain: init_from's method and backbone unless named (chains.py)
        from .chains import init_defaults

        spec = init_defaults(spec, "method" in data, named, zoo or Zoo())
    return spec


def _members_backbone(spec: RunSpec, named: bool, zoo: Zoo) -> RunSpec:
    """`--on` without a backbone trains on the members' backbone: where their manifests say it came from
    (the local folder by its absolute path, or the hub id and revision). A backbone that is `named` and
    is not theirs is refused here, before anything is loaded; where that cannot be told without loading it
    (a local folder against a hub id), the fingerprint check after loading decides."""
    records = [(m, zoo.get(m, verify=False).manifest.backbone) for m in spec.compose.members]
    check_same_backbone(records)
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


def check_same_backbone(records: list[tuple[str, BackboneRecord]]) -> None:
    """Composition members (name, backbone record) all come from one backbone (their fingerprints agree)."""
    prints = {r.fingerprint for _, r in records}
    if len(prints) > 1:
        detail = ", ".join(f"{name}: {r.name} ({r.fingerprint})" for name, r in records)
        raise StepstoneError(f"composition members come from different backbones: {detail}")
