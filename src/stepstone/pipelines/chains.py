"""Sequential intermediate training (a chain: sst2 -> anli): a run that starts from another artifact's weights.

An adapter run with `init_from` starts its adapter from a zoo adapter's weights (same method, same settings,
same backbone) and trains them on its own tasks with new heads; a full fine-tune with `init_from` starts from a
full fine-tune run's encoder. The manifest records `init_from` {path, name} and `chain` (manifest.chain_of).

resolve_init: where init_from is found. check_init: what may start what, checked before the backbone loads.
init_defaults: what a run that names only init_from trains with (load_run_spec).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import provenance
from ..artifacts import MANIFEST
from ..errors import StepstoneError, choices, did_you_mean
from ..manifest import Kind, Manifest, read_manifest
from ..methods import METHODS, Family
from ..specs import MethodSpec, RunSpec
from ..training import Mode, TrainingMode
from ..zoo import Zoo


def resolve_init(init_from: Path | str, zoo: Zoo) -> Path:
    """init_from's folder: an artifact folder at that path (a relative one from the working directory), else
    the zoo entry of that name in `zoo`, else a folder there (which read_manifest then names as no artifact):
    as `zoo show` resolves, so `--init-from src` in a checkout still finds the zoo entry 'src'."""
    path = Path(init_from)
    if (path / MANIFEST).is_file():
        return path
    text, names = str(init_from), zoo.names()
    if text in names:
        return zoo.get(text, verify=False).path
    if path.is_dir():
        return path
    raise StepstoneError(f"init_from '{text}' is neither a folder nor a zoo entry in {zoo.root} "
                         f"(entries: {choices(names) or 'none'}){did_you_mean(text, names)}")


def check_init(spec: RunSpec, mode: TrainingMode, path: Path, init: Manifest) -> None:
    """init_from (read from `path`) can start `spec`, trained in `mode`: a full fine-tune run starts a full
    fine-tune; a zoo adapter of the run's method, with the same settings (its weights must be the new adapter's,
    tensor for tensor), starts an adapter run; either on the run's backbone, as far as that can be told before
    loading it (the fingerprints are compared once it is loaded)."""
    where = f"init_from '{path}'"
    source_full = METHODS.get(init.method.kind).family is Family.FULL
    if mode is Mode.FULL and not source_full:
        raise StepstoneError(f"{where} is not a full fine-tune run (it is a {init.method.kind} {init.kind.value}): a "
                             f"full fine-tune starts from a full fine-tune run's encoder")
    if mode is not Mode.FULL:
        if source_full:
            raise StepstoneError(f"{where} is a full fine-tune run, not an adapter: an adapter run starts from a zoo "
                                 f"adapter of its method ({spec.method.kind})")
        if init.kind is Kind.RUN:
            raise StepstoneError(f"{where} is a composed run ({init.composition.setup}): its adapter was trained on "
                                 f"top of its members; a chain starts from a zoo adapter")
        if init.method.kind != spec.method.kind:
            raise StepstoneError(f"{where} is a {init.method.kind} adapter, but this run trains {spec.method.kind}: "
                                 f"a chain continues an adapter with its own method (leave --method out to take it)")
        theirs = MethodSpec.from_record(init.method.to_json(), str(path)).settings()
        ours = spec.method.settings()
        if theirs != ours:
            key = next(k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k))
            raise StepstoneError(f"{where} is a {init.method.kind} adapter with other settings "
                                 f"(method.{spec.method.kind}.{key}: {theirs.get(key)!r} there, {ours.get(key)!r} "
                                 f"here): a chain continues an adapter with the settings it was trained with (leave "
                                 f"the method settings out to take them)")
    _check_backbone(spec, where, init)


def _check_backbone(spec: RunSpec, where: str, init: Manifest) -> None:
    record = init.backbone.to_json()
    source = provenance.backbone_source(spec.backbone.name, spec.backbone.revision)
    if provenance.same_backbone(source, spec.backbone.name, record) is False:
        given = provenance.describe({"name": spec.backbone.name, "source": source})
        raise StepstoneError(f"backbone {given} is not the one {where} was trained on "
                             f"({provenance.describe(record)}): leave --backbone out to train on its backbone")


def init_defaults(spec: RunSpec, method_named: bool, backbone_named: bool, zoo: Zoo) -> RunSpec:
    """A run with init_from that names no method trains with init_from's method and settings; one that names no
    backbone trains on init_from's (its local folder by absolute path, or its hub id and revision). What is
    named stays, and check_init compares it."""
    if spec.init_from is None or (method_named and backbone_named):
        return spec
    path = resolve_init(spec.init_from, zoo)
    init = read_manifest(path, verify=False)
    changes: dict = {}
    if not method_named:
        changes["method"] = MethodSpec.from_record(init.method.to_json(), str(path))
    record = init.backbone
    if not backbone_named and record.source is not None:  # none: tiny, the default (or an older manifest)
        folder = record.source.get("local")
        if folder and not Path(folder).is_dir():
            raise StepstoneError(f"init_from '{path}' was trained on the backbone folder '{folder}', which is not "
                                 f"there: pass --backbone with where it is now (its content is checked)")
        changes["backbone"] = replace(spec.backbone, name=record.location(),
                                      revision=spec.backbone.revision or record.revision)
    try:
        return replace(spec, **changes)
    except ValueError as err:  # e.g. a full fine-tune init_from with --quantize
        raise StepstoneError(f"init_from '{path}': {err}") from None
