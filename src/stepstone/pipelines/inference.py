"""Rebuild the model an artifact describes, ready to predict: backbone, members, the composition's own layer
(composition.LAYERS), target adapter and every task head; or a bare backbone."""
from __future__ import annotations

import os
from pathlib import Path

from .. import composition as comp
from .. import methods
from ..backbone import Backbone, load_backbone, place
from ..errors import StepstoneError
from ..formats import handler_for
from ..integrity import check_artifact, check_backbone, load_full
from ..manifest import ArtifactLayout, Kind, Manifest, read_manifest
from ..specs import BackboneSpec
from ..tasks import TaskSpec
from ..training import Mode
from ..zoo import Zoo


def resolve_artifact(target: str, zoo: Zoo | None = None) -> Path:
    """A run directory path, or the name of a zoo entry."""
    path = Path(target)
    if path.is_dir():
        return path
    zoo = zoo or Zoo()
    if "/" not in target and os.sep not in target:
        return zoo.get(target, verify=False).path
    raise StepstoneError(f"'{target}' is neither a run directory nor a zoo entry in {zoo.root}")


def load_model(path: Path | None, backbone_name: str | None) -> tuple[Backbone, Manifest | None]:
    """The model to evaluate: the artifact at `path` (load_for_inference), else the bare backbone named."""
    if path is None:
        return load_backbone(BackboneSpec(backbone_name)), None
    backbone, manifest, _ = load_for_inference(path, backbone_name)
    return backbone, manifest


def load_for_inference(path: Path, backbone_name: str | None = None) -> tuple[Backbone, Manifest, TaskSpec | None]:
    """Rebuild the model an artifact describes (backbone, members, composition layer, target, every task
    head) and activate it with the first task's head. Returns the backbone, the manifest and that task (None
    for an adapter without a head, e.g. one imported from PEFT)."""
    manifest, layout = read_manifest(path), ArtifactLayout(path)
    check_artifact(path, manifest)  # configs fit the manifest: before the backbone is loaded
    backbone = _backbone_of(manifest, backbone_name)
    task = manifest.task.registered() if manifest.tasks else None
    model, name = backbone.model, manifest.name
    full = manifest.mode == Mode.FULL.value
    if full:
        for record in manifest.tasks:
            handler_for(record.registered()).add_head(model, record.head, record.registered())
        load_full(model, layout.full_weights)
        setup = None
    elif manifest.kind is Kind.ADAPTER:
        methods.load_adapter(model, path, name, with_head=task is not None)
        setup = name
    else:
        setup = _load_composition(model, manifest, layout)
    if not full:
        for t in manifest.tasks[1:]:  # further multi-task heads
            methods.load_head(model, layout.head(t.name), t.head)
    methods.activate(model, setup, head=name if task is not None else None)
    layer = _layer_of(manifest)
    if layer is not None and layer.activate is not None:
        layer.activate(model, manifest.composition.members)
    place(model)
    model.eval()
    return backbone, manifest, task


def _backbone_of(manifest: Manifest, backbone_name: str | None) -> Backbone:
    """The backbone as it was trained on (quantisation, attention), checked by its fingerprint: `backbone_name`,
    else where the manifest says it came from (a local folder by its absolute path, so a relative name recorded
    elsewhere still finds it)."""
    record = manifest.backbone
    local = (record.source or {}).get("local")
    if backbone_name is None and local and not Path(local).is_dir():
        raise StepstoneError(f"'{manifest.name}' was trained on the backbone folder '{local}', which is "
                             f"not there: pass --backbone with where it is now (its fingerprint is checked)")
    backbone = load_backbone(record.spec(backbone_name or record.location()))
    check_backbone(backbone, manifest.name, record)
    return backbone


def _layer_of(manifest: Manifest) -> comp.TrainedLayer | None:
    composition = manifest.composition
    return comp.trained_layer(comp.Semantics(composition.semantics)) if composition is not None else None


def _load_composition(model: object, manifest: Manifest, layout: ArtifactLayout) -> object:
    """A composed run's members, its composition layer and its target (with its head); returns the setup."""
    composition, name = manifest.composition, manifest.name
    for member in composition.members:
        methods.load_adapter(model, layout.member(member), member, with_head=False)
    layer = _layer_of(manifest)
    if layer is not None:  # the composition's own layer
        layer.load(model, layout.path / layer.folder, composition.members)
    methods.load_adapter(model, layout.target, name, with_head=True)
    return comp.adapters_setup(composition.composition(), name, comp.Semantics(composition.semantics))
