"""An artifact's files agree with its manifest and with the model they load into.

The manifest's hashes (`stepstone.artifacts`) catch a file changed after the save. These checks catch
files that do not fit together however that came about: a tool that rewrote weights and re-hashed the
manifest, an artifact saved before every file was hashed, a hand-assembled folder, an edited manifest.

- Configs, before any model is loaded (`check_artifact`): adapter_config.json holds the settings the
  manifest's method gives; head_config.json is a head of the manifest's task (head type, labels,
  choices); a composition's trained layer (composition.LAYERS: adapter_fusion_config.json,
  lora_fusion_config.json) fuses the manifest's members.
- Weights, as they load (`stepstone.methods`, `load_full`): the file's safetensors header is readable,
  every tensor the model expects is in it with the same shape, and it holds no other tensor. The
  adapters library only logs missing or unexpected keys (a renamed tensor would load as zeros and the
  run would evaluate without a word), and raises a multi-line RuntimeError on a shape mismatch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .artifacts import read_json
from .composition import Semantics, trained_layer
from .errors import StepstoneError
from .manifest import ArtifactLayout, BackboneRecord, Kind, Manifest, MethodRecord, TaskRecord, read_manifest

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter.safetensors"  # the adapters library's names
HEAD_CONFIG, HEAD_WEIGHTS = "head_config.json", "model_head.safetensors"
FUSION_CONFIG, FUSION_WEIGHTS = "adapter_fusion_config.json", "model_adapter_fusion.safetensors"
# stepstone task format -> the adapters library's head_type of its head (stepstone.formats adds them)
HEAD_TYPES = {"classification": "classification", "tagging": "tagging", "qa": "question_answering",
              "multiple_choice": "multiple_choice"}
Shapes = dict[str, tuple[int, ...]]


# ------------------------------------------------------------------------------------------------ configs
def read_config(path: Path) -> dict:
    """A JSON config file of an artifact, as an object; a missing or malformed one is named."""
    if not path.is_file():
        raise StepstoneError(f"'{path}' is missing")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise StepstoneError(f"{path}: not an adapters-library config (expected an object with a 'config' object)")
    return data


def check_artifact(path: Path, manifest: Manifest) -> None:
    """Every config of the artifact at `path` fits its (already read and checked) manifest. Cheap: reads
    JSON only, so it runs before the backbone is loaded."""
    layout, tasks = ArtifactLayout(path), manifest.tasks
    if manifest.mode == "full":
        if not layout.full_weights.is_file():
            raise StepstoneError(f"'{layout.full_weights}' is missing")
        return
    first = tasks[0] if tasks else None
    if manifest.kind is Kind.ADAPTER:
        check_adapter(path, manifest.method, first)
    else:
        composition = manifest.composition
        recorded = composition.member_methods or {}
        for member in composition.members:
            folder = layout.member(member)
            method = recorded.get(member) or _member_manifest(folder).method
            check_adapter(folder, method, None)
        layer = trained_layer(Semantics(composition.semantics))
        if layer is not None:
            LAYER_FILES[layer.mode](layout.layer(layer.folder), composition.members)
        check_adapter(layout.target, manifest.method, first)
    for record in tasks[1:]:
        check_head(layout.head(record.name), record)


def check_backbone(backbone: Any, what: str, record: BackboneRecord) -> None:
    """`what` (an artifact, a member) was trained on the loaded `backbone` (a backbone.Backbone): the
    fingerprints agree; the message names both backbones."""
    if record.fingerprint != backbone.fingerprint:
        raise StepstoneError(
            f"'{what}' was trained on backbone '{record.name}' (fingerprint {record.fingerprint}), "
            f"not on the loaded '{backbone.spec.name}' (fingerprint {backbone.fingerprint})"
        )


def _member_manifest(folder: Path) -> Manifest:
    return read_manifest(folder, verify=False)


def check_adapter(folder: Path, method: MethodRecord, head: TaskRecord | None) -> None:
    """`folder` holds an adapter with the settings of the manifest's `method` record, and, for a task
    record `head`, that task's head. (The name it was saved under may differ from the manifest's: loading
    renames it, as for a copied entry.)"""
    from . import methods
    from .specs import MethodSpec

    config = read_config(folder / ADAPTER_CONFIG)
    kind = method.kind
    spec = MethodSpec.from_record(method.to_json(), source=f"{folder} manifest method")
    expected = json.loads(json.dumps(methods.adapter_config(spec).to_dict()))
    saved = config["config"]
    # settings both sides know (a newer adapters library may add fields with defaults)
    differ = sorted(k for k in set(expected) & set(saved) if expected[k] != saved[k])
    if differ:
        key = differ[0]
        raise StepstoneError(f"{folder / ADAPTER_CONFIG}: '{key}' is {json.dumps(saved[key])}, but the manifest's "
                             f"{kind} settings give {json.dumps(expected[key])}: the file does not match the "
                             f"artifact")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise StepstoneError(f"'{folder / ADAPTER_WEIGHTS}' is missing")
    if head is not None:
        check_head(folder, head)


def check_head(folder: Path, record: TaskRecord) -> None:
    """`folder` holds the head the manifest's task record names: its head type, labels and choices."""
    file = folder / HEAD_CONFIG
    config = read_config(file)
    head, task, fmt = config["config"], record.name, record.format
    wanted = HEAD_TYPES.get(fmt)
    if head.get("head_type") != wanted:
        raise StepstoneError(f"{file}: a {head.get('head_type')!r} head, but the manifest's task '{task}' ({fmt}) "
                             f"needs a {wanted!r} head")
    if fmt in ("classification", "tagging"):
        labels = {label: i for i, label in enumerate(record.labels)}
        if head.get("label2id") != labels or head.get("num_labels") != len(labels):
            raise StepstoneError(f"{file}: the head's labels {_labels(head.get('label2id'))} are not those of the "
                                 f"manifest's task '{task}' ({', '.join(labels)})")
    if fmt == "multiple_choice" and head.get("num_choices") != record.num_choices:
        raise StepstoneError(f"{file}: the head scores {head.get('num_choices')} choices, the manifest's task "
                             f"'{task}' has {record.num_choices}")
    if not (folder / HEAD_WEIGHTS).is_file():
        raise StepstoneError(f"'{folder / HEAD_WEIGHTS}' is missing")


def check_fusion(folder: Path, members: tuple[str, ...]) -> None:
    file = folder / FUSION_CONFIG
    if not file.is_file():
        raise StepstoneError(f"'{file}' is missing")
    config = read_json(file)
    names = config.get("adapter_names") if isinstance(config, dict) else None
    if names != list(members) or config.get("name") != ",".join(members):
        raise StepstoneError(f"{file}: fuses {names!r}, but the manifest's members are {list(members)}")
    if not (folder / FUSION_WEIGHTS).is_file():
        raise StepstoneError(f"'{folder / FUSION_WEIGHTS}' is missing")


def _check_lora_fusion(folder: Path, members: tuple[str, ...]) -> None:
    from .lora_fusion import check_files

    check_files(folder, members)


# a composition layer's mode -> the check of its folder's files against the manifest's members (JSON only)
LAYER_FILES = {"fusion": check_fusion, "lora-fusion": _check_lora_fusion}


def _labels(label2id: Any) -> str:
    if not isinstance(label2id, dict):
        return repr(label2id)
    return "(" + ", ".join(str(k) for k, _ in sorted(label2id.items(), key=lambda kv: str(kv[1]))) + ")"


# ------------------------------------------------------------------------------------------------ weights
def tensor_shapes(path: Path) -> Shapes:
    """Tensor name -> shape from a safetensors file's header (no data is read); a missing, truncated or
    garbled file is named in one line."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise StepstoneError(f"'{path}' is missing")
    try:
        with safe_open(str(path), "pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise StepstoneError(f"'{path}': not a readable safetensors file ({err})") from None


def compare_tensors(file: Path, found: Shapes, expected: Shapes) -> None:
    """Refuse unless `found` (the file's tensors) is exactly `expected` (the model's): one line naming the
    file and the first missing, unexpected and mis-shaped tensor (with how many more)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
    _refuse(file, missing, unexpected, wrong, found, expected)


def _refuse(file: Path, missing: list[str], unexpected: list[str], wrong: list[str], found: Shapes,
            expected: Shapes) -> None:
    problems = []
    if missing:
        problems.append(f"tensor {missing[0]} is missing (shape {list(expected[missing[0]])}){_more(missing)}")
    if unexpected:
        problems.append(f"unexpected tensor {unexpected[0]}{_more(unexpected)}")
    if wrong:
        k = wrong[0]
        problems.append(f"tensor {k} has shape {list(found[k])}, the model's is {list(expected[k])}{_more(wrong)}")
    if problems:
        raise StepstoneError(f"'{file}' does not fit the model: {'; '.join(problems)}")


def _more(items: list[str]) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


def renamed(shapes: Shapes, old: str, new: str) -> Shapes:
    """Tensor names with the owner segment `old` (after a method's container, adapter_fusion_layer or heads)
    replaced by `new`: what the adapters library does when loading an adapter or head under another name."""
    from .methods import FUSION_OWNER, adapter_owners

    if old == new:
        return dict(shapes)
    containers = (*adapter_owners(), FUSION_OWNER, "heads")
    out = {}
    for key, shape in shapes.items():
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in containers and parts[i + 1] == old:
                parts[i + 1] = new
                break
        out[".".join(parts)] = shape
    return out


def load_full(model: Any, weights: Path, encoder_only: bool = False) -> None:
    """Load a full fine-tune's weights into `model` strictly: every tensor of the model present, none
    unknown, shapes equal. `encoder_only`: the file's head tensors are dropped (the paper reloads the
    intermediate checkpoint encoder-only), the only tensors allowed to be unexpected."""
    from safetensors.torch import load_model

    found = tensor_shapes(weights)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # shapes first: a mismatch makes load_state_dict raise midway
    common = {k: v for k, v in found.items() if k in expected}
    compare_tensors(weights, common, {k: expected[k] for k in common})
    # load_model knows that tied aliases were stored once, so its missing keys are the truly missing ones
    missing, unexpected = load_model(model, str(weights), strict=False)
    unexpected = [k for k in unexpected if not (encoder_only and k.startswith("heads."))]
    _refuse(weights, sorted(missing), sorted(unexpected), [], found, expected)
