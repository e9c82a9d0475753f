"""Zoo LoRA entries to and from PEFT adapter folders.

`export_adapter` turns a LoRA zoo entry into a folder that `peft.PeftModel.from_pretrained(base, DIR)`
loads onto the bare transformers encoder (`AutoModel`, the backbone without a head): PEFT's
`adapter_config.json` + `adapter_model.safetensors`, plus the stepstone manifest and the task head(s) in
AdapterHub layout (`stepstone_heads/TASK/`), which PEFT does not read. `import_adapter` brings a PEFT
LoRA folder (safetensors only) into the zoo as a LoRA entry that composes like a trained one.

Both directions are exact: the two libraries compute the same update, `W x + b + (B A dropout(x)) * alpha / r`
(adapters: `LoRA.forward` with composition_mode "add", no gating; PEFT: `lora.Linear.forward`), and the
matrices have the same shapes (A: [r, in], B: [out, r]), so conversion only renames tensors:

    adapters: roberta.encoder.layer.3.attention.self.query.loras.NAME.lora_A
    PEFT:     base_model.model.encoder.layer.3.attention.self.query.lora_A.weight

adapters' LoRA updates at most these linear layers of each encoder layer: attention.self.query / key /
value, intermediate.dense and output.dense (the FFN down-projection, never attention.output.dense). The
exported PEFT config names them with one regex, since PEFT's suffix matching of "output.dense" would also
hit attention.output.dense. Names are the bare encoder's: on a task model PEFT finds no target and fails;
load onto its encoder module instead (`PeftModel.from_pretrained(task_model.roberta, DIR)` adapts it in place).

Zoo entries themselves are AdapterHub folders: `model.load_adapter(str(entry), use_safetensors=True)` on an
`adapters.AutoAdapterModel` of the same backbone loads adapter and head (adapters 1.3 looks for the pickle
`pytorch_adapter.bin` unless told `use_safetensors=True`; stepstone writes no pickle).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from ..artifacts import atomic_dir, check_destination, read_json, sha256, to_json
from ..errors import StepstoneError, choices
from ..manifest import (ArtifactLayout, BackboneRecord, Kind, Manifest, MethodRecord, TaskRecord, TrainableRecord,
                       head_name, name_problems, write_manifest)
from ..methods import LoRASpec, LoRATarget
from ..specs import MethodSpec
from ..zoo import Entry, Zoo

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PICKLE = "adapter_model.bin"
STEPSTONE_MANIFEST = "stepstone_manifest.json"
STEPSTONE_HEADS = "stepstone_heads"  # one AdapterHub head folder per task: head_config.json + model_head.safetensors
HEAD_CONFIG = "head_config.json"  # the adapters library's head file names
HEAD_WEIGHTS = "model_head.safetensors"
ADAPTER_CONFIG = "adapter_config.json"  # the adapters library's adapter file names (zoo entries)
ADAPTER_WEIGHTS = "adapter.safetensors"

# Linear layers (path inside one encoder layer) adapters' LoRA can update, and the stepstone target of each.
MODULES = {
    "attention.self.query": LoRATarget.Q,
    "attention.self.key": LoRATarget.K,
    "attention.self.value": LoRATarget.V,
    "intermediate.dense": LoRATarget.INTERMEDIATE,
    "output.dense": LoRATarget.OUTPUT,
}
MODULE_OF = {target: module for module, target in MODULES.items()}

# adapters-library LoRA tensors: [<base model prefix>.]encoder.layer.N.<module>.loras.<adapter>.lora_A|lora_B
_ADAPTERS_KEY = re.compile(r"^(?:(?P<prefix>\w+)\.)?encoder\.layer\.(?P<layer>\d+)\.(?P<module>[\w.]+?)"
                           r"\.loras\.(?P<adapter>[^.]+)\.(?P<param>lora_[AB])$")
# PEFT LoRA tensors as saved: base_model.model.[<prefix>.]encoder.layer.N.<module>.lora_A|lora_B.weight
_PEFT_KEY = re.compile(r"^base_model\.model\.(?:(?P<prefix>\w+)\.)?encoder\.layer\.(?P<layer>\d+)\."
                       r"(?P<module>[\w.]+?)\.(?P<param>lora_[AB])\.weight$")
# PEFT initialisations whose saved adapter means the same on the unchanged base (PiSSA, OLoRA, LoftQ,
# CorDA ... rewrite the base weights)
_SAFE_INITS = (True, False, "gaussian")
# PEFT settings that are interpreted below, or do not change what a saved LoRA computes
_PEFT_INTERPRETED = {"peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules",
                     "layers_pattern", "base_model_name_or_path", "revision", "task_type", "inference_mode",
                     "auto_mapping", "peft_version", "init_lora_weights", "megatron_core"}


class Format(str, Enum):
    """Adapter formats stepstone converts zoo entries to and from."""

    PEFT = "peft"  # Hugging Face PEFT: adapter_config.json + adapter_model.safetensors


def parse_format(value: str | Format) -> Format:
    try:
        return Format(value.lower() if isinstance(value, str) else value)
    except ValueError:
        raise StepstoneError(f"unknown format '{value}' (valid: {choices(f.value for f in Format)})") from None


@dataclass(frozen=True)
class Exported:
    """A written PEFT folder: where, what it targets, and which stepstone heads travel next to it."""

    path: Path
    entry: str
    lora: LoRASpec
    tensors: int
    heads: tuple[str, ...]


@dataclass(frozen=True)
class Imported:
    """A new zoo entry made from a PEFT folder; `heads` are the stepstone heads restored with it."""

    entry: Entry
    lora: LoRASpec
    tensors: int
    heads: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- export


def export_adapter(name: str, out: Path, fmt: str | Format = Format.PEFT, zoo: Zoo | None = None) -> Exported:
    """Write zoo entry `name` to the new folder `out` in format `fmt` (peft). Everything is checked before
    anything is written; the folder appears complete or not at all."""
    parse_format(fmt)
    zoo = zoo or Zoo()
    out = Path(out)
    if out.exists():
        raise StepstoneError(f"'{out}' already exists; pick another --out or remove it first")
    check_destination(out)
    entry = zoo.get(name)  # verifies every file against the manifest's hashes
    manifest = entry.manifest
    if manifest.kind is not Kind.ADAPTER:
        raise StepstoneError(f"cannot export '{name}' to PEFT: it is a {manifest.kind.value}, not a zoo adapter")
    kind = manifest.method.kind
    if kind != "lora":
        from ..methods import METHODS, Family

        why = ("PEFT has no bottleneck adapters" if METHODS.get(kind).family is Family.BOTTLENECK
               else "stepstone maps only LoRA adapters to PEFT's format")
        raise StepstoneError(f"cannot export '{name}' to PEFT: it is a {kind} adapter and {why}; only LoRA "
                             "entries export")
    config = read_json(entry.path / ADAPTER_CONFIG)
    lora_config = config.get("config", {}) if isinstance(config, dict) else {}
    problems = _unexportable(lora_config)
    if problems:
        raise StepstoneError(f"cannot export '{name}' to PEFT: {'; '.join(problems)}")
    from ..integrity import check_artifact, tensor_shapes

    check_artifact(entry.path, manifest)
    tensor_shapes(entry.path / ADAPTER_WEIGHTS)  # a readable safetensors header, or one line naming the file

    from safetensors.torch import load_file

    tensors = load_file(str(entry.path / ADAPTER_WEIGHTS))
    peft_tensors, modules, layers = _adapters_to_peft(name, config.get("name", name), tensors)
    spec = LoRASpec(r=int(lora_config["r"]), alpha=lora_config["alpha"], dropout=float(lora_config["dropout"]),
                    target_modules=tuple(t for t in LoRATarget if MODULE_OF[t] in modules))
    _check_ranks(name, peft_tensors, spec.r)
    heads = _entry_heads(entry)
    peft_config = _peft_config(spec, modules, layers, manifest.backbone)

    from safetensors.torch import save_file

    with atomic_dir(out) as tmp:
        save_file(peft_tensors, str(tmp / PEFT_WEIGHTS), metadata={"format": "pt"})  # PEFT's own metadata
        peft_config.save_pretrained(str(tmp))
        (tmp / STEPSTONE_MANIFEST).write_text(to_json(manifest.to_json()), encoding="utf-8")
        for task, folder in heads.items():
            target = tmp / STEPSTONE_HEADS / task
            target.mkdir(parents=True)
            for file in (HEAD_CONFIG, HEAD_WEIGHTS):
                shutil.copyfile(folder / file, target / file)
        (tmp / "README.md").write_text(_readme(name, manifest, spec, tuple(heads)), encoding="utf-8")
    return Exported(out, name, spec, len(peft_tensors), tuple(heads))


def _unexportable(config: dict) -> list[str]:
    """Why an adapters-library LoRA config has no PEFT LoRA equivalent (empty: it has one)."""
    problems = []
    if config.get("architecture") != "lora":
        problems.append(f"its adapter_config.json is not a LoRA config (architecture {config.get('architecture')!r})")
        return problems
    if config.get("composition_mode", "add") != "add":
        problems.append(f"composition_mode '{config['composition_mode']}' scales activations ((IA)^3), "
                        "PEFT's LoRA adds a low-rank update")
    if config.get("use_gating"):
        problems.append("use_gating: a learned gate on the update, which PEFT's LoRA has no equivalent for")
    if config.get("use_dora"):
        problems.append("use_dora: DoRA rescales the updated weights; stepstone exports plain LoRA only")
    if config.get("vera_d") is not None or config.get("vera_b") is not None:
        problems.append("VeRA (vera_d / vera_b): shared random matrices, not a LoRA")
    if config.get("dtype") not in (None, "float32"):
        problems.append(f"dtype {config['dtype']}: stepstone exports float32 LoRA only")
    if not isinstance(config.get("r"), int) or not isinstance(config.get("alpha"), (int, float)):
        problems.append("r / alpha missing from its adapter_config.json")
    return problems


def _adapters_to_peft(entry: str, adapter: str, tensors: dict) -> tuple[dict, set[str], list[int]]:
    """Rename adapters-library LoRA tensors to PEFT's saved names; every layer must update the same modules."""
    out, seen, unknown = {}, set(), []
    for key, tensor in tensors.items():
        match = _ADAPTERS_KEY.match(key)
        if match is None or match["adapter"] != adapter or match["module"] not in MODULES:
            unknown.append(key)
            continue
        layer = int(match["layer"])
        seen.add((layer, match["module"]))
        out[f"base_model.model.encoder.layer.{layer}.{match['module']}.{match['param']}.weight"] = tensor.contiguous()
    if unknown:
        raise StepstoneError(f"cannot export '{entry}' to PEFT: {ADAPTER_WEIGHTS} holds tensors that are not "
                             f"LoRA A/B matrices of '{adapter}' ({_few(unknown)})")
    if not out:
        raise StepstoneError(f"cannot export '{entry}' to PEFT: {ADAPTER_WEIGHTS} holds no LoRA tensors")
    layers = sorted({layer for layer, _ in seen})
    modules = {module for _, module in seen}
    if seen != {(layer, module) for layer in layers for module in modules}:
        raise StepstoneError(f"cannot export '{entry}' to PEFT: its layers update different modules")
    return out, modules, layers


def _check_ranks(what: str, tensors: dict, r: int) -> None:
    """A is [r, in] and B is [out, r] (names: PEFT's `...lora_A.weight` or adapters-style `...lora_A`)."""
    bad = [k for k, t in tensors.items()
           if t.dim() != 2 or (t.shape[0] if ".lora_A" in k else t.shape[1]) != r]
    if bad:
        raise StepstoneError(f"'{what}': LoRA tensors do not have rank r={r} ({_few(bad)})")


def target_regex(modules: set[str], layers: list[int]) -> str:
    """PEFT `target_modules` (a regex PEFT full-matches against module names) selecting exactly `modules` in
    `layers` of the bare encoder (`encoder.layer.N...`), the model the saved tensor names are for. On a task
    model (`roberta.encoder...`) it matches nothing, so PEFT fails loudly instead of loading no weights."""
    alternatives = "|".join(re.escape(m) for m in sorted(modules))
    return rf"encoder\.layer\.(?:{'|'.join(str(i) for i in layers)})\.(?:{alternatives})"


def _peft_config(spec: LoRASpec, modules: set[str], layers: list[int], backbone: dict) -> Any:
    LoraConfig = _lora_config_class()

    # base_model_name_or_path lets AutoPeftModel find the base; 'tiny' is built in code and has no such path
    base = None if backbone.name == "tiny" else backbone.name
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, bias="none",
                      target_modules=target_regex(modules, layers), base_model_name_or_path=base,
                      revision=backbone.revision, inference_mode=True)


def _entry_heads(entry: Entry) -> dict[str, Path]:
    """Task name -> folder holding its AdapterHub head files (the first task's head sits with the adapter)."""
    heads = {}
    for i, record in enumerate(entry.manifest.tasks):
        folder = entry.path if i == 0 else ArtifactLayout(entry.path).head(record.name)
        if all((folder / f).is_file() for f in (HEAD_CONFIG, HEAD_WEIGHTS)):
            heads[record.name] = folder
    return heads


def _readme(name: str, manifest: Manifest, spec: LoRASpec, heads: tuple[str, ...]) -> str:
    backbone = manifest.backbone
    return (
        f"# {name} (stepstone LoRA adapter in PEFT format)\n\n"
        f"Backbone: {backbone.name} (stepstone fingerprint {backbone.fingerprint}"
        + (f", trained {backbone.quantize.value}-quantised" if backbone.quantize.value != "none" else "") + "). "
        f"LoRA r={spec.r}, alpha={spec.alpha}, modules: {', '.join(MODULE_OF[t] for t in spec.target_modules)}.\n\n"
        "PEFT loads the encoder LoRA onto the bare encoder (transformers AutoModel of the backbone):\n\n"
        "    model = peft.PeftModel.from_pretrained(AutoModel.from_pretrained(BACKBONE), THIS_FOLDER)\n\n"
        "PEFT does not load the task head: "
        + (f"it is in {STEPSTONE_HEADS}/<task>/ ({', '.join(heads)}) in AdapterHub layout "
           "(adapters' model.load_head(folder, use_safetensors=True))" if heads else "this entry has none")
        + f". {STEPSTONE_MANIFEST} is the zoo entry's manifest (training settings, labels, metrics). "
        "`stepstone import THIS_FOLDER --format peft --name NAME` brings all of it back into a zoo.\n"
    )


# ---------------------------------------------------------------------------------------------- import


def import_adapter(path: Path, name: str, fmt: str | Format = Format.PEFT, zoo: Zoo | None = None,
                   backbone: str | None = None) -> Imported:
    """Make zoo entry `name` from the PEFT LoRA folder `path` (safetensors only, never a pickle).

    The backbone is `backbone`, else the one in the folder's stepstone_manifest.json (a stepstone export),
    else the PEFT config's base_model_name_or_path. A folder exported by stepstone also brings back its
    task head(s), labels and training record; a plain PEFT folder gives a head-less entry to compose on.
    Files and settings are checked before the backbone is loaded; the entry is written atomically."""
    from .. import methods

    parse_format(fmt)
    zoo = zoo or Zoo()
    destination = zoo.path(name)
    if destination.exists():
        raise StepstoneError(f"'{destination}' already exists; pick another --name or remove it first")
    check_destination(destination)
    path = Path(path)
    config, tensors = _read_peft(path)
    renamed, modules, layers = _peft_to_adapters(path, tensors)
    spec = _lora_spec(path, config, modules, tensors=renamed)
    source = _read_source(path)
    if source is not None:
        # the target order of the entry it came from, where PEFT's config says the same
        original = source.get("method", {}).get("settings", {}).get("target_modules", ())
        if set(original) == {t.value for t in spec.target_modules}:
            spec = LoRASpec(spec.r, spec.alpha, spec.dropout, tuple(LoRATarget(t) for t in original))
    tasks = [TaskRecord.from_json(r) for r in source["tasks"]] if source is not None else []
    loaded = _import_backbone(path, config, source, backbone)

    model = loaded.model
    methods.add_adapter(model, name, MethodSpec(kind="lora", lora=spec))
    _copy_lora(model, name, renamed, path, loaded.spec.name, layers)
    heads = [head_name(name, record.name, i) for i, record in enumerate(tasks)]
    for record, head in zip(tasks, heads):
        methods.load_head(model, path / STEPSTONE_HEADS / record.name, head)
    manifest = _import_manifest(name, path, config, spec, source, BackboneRecord.of(loaded),
                                _parameters(model, name, heads), loaded.num_parameters)
    with atomic_dir(destination) as tmp:
        methods.save_adapter(model, tmp, name, with_head=bool(heads))
        for record, head in zip(tasks[1:], heads[1:]):  # extra multi-task heads, as train_run saves them
            ArtifactLayout(tmp).head(record.name).mkdir(parents=True)
            model.save_head(str(ArtifactLayout(tmp).head(record.name)), head, use_safetensors=True)
        write_manifest(tmp, manifest)
    return Imported(zoo.get(name), spec, len(renamed), tuple(heads))


def _read_peft(path: Path) -> tuple[dict, dict]:
    """A PEFT folder's config (checked to be a plain LoRA) and its safetensors tensors."""
    if not path.is_dir():
        raise StepstoneError(f"'{path}' is not a folder (expected a PEFT adapter folder with {PEFT_CONFIG})")
    if not (path / PEFT_CONFIG).is_file():
        raise StepstoneError(f"'{path}' is not a PEFT adapter folder: {PEFT_CONFIG} is missing")
    if not (path / PEFT_WEIGHTS).is_file():
        if (path / PEFT_PICKLE).is_file():
            raise StepstoneError(f"'{path}' holds only {PEFT_PICKLE}, a pickle, which stepstone never loads; "
                                 f"re-save it with save_pretrained(..., safe_serialization=True) to get {PEFT_WEIGHTS}")
        raise StepstoneError(f"'{path}' is not a PEFT adapter folder: {PEFT_WEIGHTS} is missing")
    config = read_json(path / PEFT_CONFIG)
    if not isinstance(config, dict):
        raise StepstoneError(f"{path / PEFT_CONFIG}: not a PEFT config (expected a JSON object)")
    problems = _unimportable(config)
    if problems:
        raise StepstoneError(f"cannot import '{path}': {'; '.join(problems)}")

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return config, load_file(str(path / PEFT_WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise StepstoneError(f"{path / PEFT_WEIGHTS}: not a readable safetensors file ({err})") from None


def _read_source(path: Path) -> dict | None:
    """The stepstone manifest a stepstone export carries (None for other PEFT folders); every task it
    names must have its head folder."""
    if not (path / STEPSTONE_MANIFEST).is_file():
        return None
    source = read_json(path / STEPSTONE_MANIFEST)
    if not (isinstance(source, dict) and isinstance(source.get("backbone"), dict)
            and isinstance(source.get("tasks"), list) and isinstance(source.get("name"), str)
            and isinstance(source.get("task"), dict)):
        raise StepstoneError(f"{path / STEPSTONE_MANIFEST}: not a stepstone manifest (no name / backbone / tasks)")
    # its task names become folder names (stepstone_heads/TASK here, heads/TASK in the zoo): the name rule
    problems = name_problems({"kind": "adapter", "mode": "adapter", **source, "composition": None})
    if problems:
        raise StepstoneError(f"{path / STEPSTONE_MANIFEST}: {problems[0]}")
    missing = [r["name"] for r in source["tasks"]
               if not all((path / STEPSTONE_HEADS / r["name"] / f).is_file() for f in (HEAD_CONFIG, HEAD_WEIGHTS))]
    if missing:
        raise StepstoneError(f"'{path}': {STEPSTONE_MANIFEST} names task head(s) {', '.join(missing)} that "
                             f"{STEPSTONE_HEADS}/ lacks; remove {STEPSTONE_MANIFEST} to import the encoder LoRA alone")
    from ..integrity import check_head

    for record in source["tasks"]:  # each head fits its task (head type, labels), before the backbone is loaded
        check_head(path / STEPSTONE_HEADS / record["name"], TaskRecord.from_json(record))
    return source


def _import_backbone(path: Path, config: dict, source: dict | None, name: str | None) -> Any:
    """Load the backbone to import onto: `name`, else the exported entry's (same revision and quantisation),
    else PEFT's base_model_name_or_path. An exported entry's fingerprint must match."""
    from ..backbone import load_backbone
    from ..integrity import check_backbone
    from ..specs import BackboneSpec

    recorded = BackboneRecord.from_json(source["backbone"]) if source is not None else None
    if name:
        spec = BackboneSpec(name)
    elif recorded is not None:
        # the entry's revision, quantisation and attention; a local folder by the absolute path recorded (the
        # name may be relative to another directory)
        spec = recorded.spec(recorded.location())
    elif config.get("base_model_name_or_path"):
        spec = BackboneSpec(config["base_model_name_or_path"], config.get("revision"))
    else:
        raise StepstoneError(f"'{path}' does not say which backbone it adapts (no base_model_name_or_path): "
                             "give --backbone (tiny, a local model folder or a hub id)")
    loaded = load_backbone(spec)
    if recorded is not None:
        check_backbone(loaded, str(path), recorded)
    return loaded


def _unimportable(config: dict) -> list[str]:
    """Why a PEFT adapter config is not a plain LoRA that adapters' LoRA computes the same way."""
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        return [f"it is a PEFT {peft_type} adapter; only LORA imports"]
    problems = []
    if config.get("use_dora"):
        problems.append("use_dora (DoRA rescales the updated weights; stepstone imports plain LoRA only)")
    if config.get("use_rslora"):
        problems.append("use_rslora (scaling alpha/sqrt(r); adapters' LoRA scales by alpha/r)")
    if config.get("bias", "none") != "none":
        problems.append(f"bias '{config['bias']}' (trained biases of the base layers; only 'none' imports)")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']} (fully trained modules, e.g. a task head, "
                        "are not LoRA; save the adapter without them)")
    if config.get("init_lora_weights", True) not in _SAFE_INITS:
        problems.append(f"init_lora_weights '{config['init_lora_weights']}' (this initialisation rewrites the base "
                        "weights, so the adapter does not fit the unchanged backbone)")
    alpha = config.get("lora_alpha")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or float(alpha) != int(alpha):
        problems.append(f"lora_alpha {alpha!r} (stepstone's lora.alpha is an integer)")
    if not isinstance(config.get("r"), int) or isinstance(config.get("r"), bool):
        problems.append(f"r {config.get('r')!r} (an integer rank is needed)")
    named = {"use_dora", "use_rslora", "bias", "modules_to_save", "init_lora_weights"}
    defaults = _peft_defaults()
    unknown = sorted(k for k in config if k not in defaults and k not in _PEFT_INTERPRETED)
    if unknown:
        problems.append(f"unknown PEFT setting(s) {', '.join(unknown)} (this stepstone knows peft's LoraConfig fields)")
    other = sorted(k for k in config if k in defaults and k not in _PEFT_INTERPRETED | named
                   and not _same(config[k], defaults[k]))
    if other:
        problems.append("setting(s) stepstone's LoRA has no equivalent for: "
                        + ", ".join(f"{k}={json.dumps(config[k])}" for k in other))
    return problems


def _peft_defaults() -> dict:
    """peft's LoraConfig defaults as saved JSON values."""
    LoraConfig = _lora_config_class()

    return json.loads(json.dumps(LoraConfig().to_dict(), default=str))


def _same(value: Any, default: Any) -> bool:
    empty = (None, {}, [])
    return value == default or (value in empty and default in empty)


def _peft_to_adapters(path: Path, tensors: dict) -> tuple[dict, set[str], list[int]]:
    """PEFT tensor names -> (encoder-relative module path, A|B); refuses anything adapters' LoRA cannot hold."""
    out, seen, unknown, untargetable, prefixes = {}, set(), [], set(), set()
    for key, tensor in tensors.items():
        match = _PEFT_KEY.match(key)
        if match is None:
            unknown.append(key)
            continue
        if match["module"] not in MODULES:
            untargetable.add(match["module"])
            continue
        prefixes.add(match["prefix"])
        layer = int(match["layer"])
        seen.add((layer, match["module"]))
        out[f"encoder.layer.{layer}.{match['module']}.{match['param']}"] = tensor
    problems = []
    if untargetable:
        problems.append(f"it updates {', '.join(sorted(untargetable))}, which adapters' LoRA cannot target "
                        f"(it can: {', '.join(MODULES)})")
    if unknown:
        problems.append(f"{PEFT_WEIGHTS} holds tensors that are not LoRA A/B matrices of encoder layers "
                        f"({_few(unknown)})")
    if problems:
        raise StepstoneError(f"cannot import '{path}': {'; '.join(problems)}")
    if not out:
        raise StepstoneError(f"cannot import '{path}': {PEFT_WEIGHTS} holds no LoRA tensors")
    if len(prefixes) > 1:
        raise StepstoneError(f"cannot import '{path}': its tensors come from different models "
                             f"({', '.join(sorted(p or '(bare encoder)' for p in prefixes))})")
    layers = sorted({layer for layer, _ in seen})
    modules = {module for _, module in seen}
    if seen != {(layer, module) for layer in layers for module in modules}:
        raise StepstoneError(f"cannot import '{path}': its layers update different modules; a stepstone LoRA "
                             "updates the same modules in every layer")
    for key in out:
        other = key[:-1] + ("B" if key.endswith("A") else "A")
        if other not in out:
            raise StepstoneError(f"cannot import '{path}': {key} has no matching {other.rsplit('.', 1)[1]}")
    return out, modules, layers


def _lora_spec(path: Path, config: dict, modules: set[str], tensors: dict) -> LoRASpec:
    try:
        spec = LoRASpec(r=config["r"], alpha=int(config["lora_alpha"]), dropout=float(config.get("lora_dropout", 0.0)),
                        target_modules=tuple(t for t in LoRATarget if MODULE_OF[t] in modules))
    except ValueError as err:
        raise StepstoneError(f"cannot import '{path}': {err}") from None
    _check_ranks(str(path), tensors, spec.r)
    return spec


def _copy_lora(model: Any, name: str, tensors: dict, path: Path, backbone: str, layers: list[int]) -> None:
    """Copy the renamed tensors into the adapter `name` just added; the key sets and shapes must match."""
    import torch

    prefix = model.base_model_prefix
    params = {}
    for key, param in model.named_parameters():
        match = _ADAPTERS_KEY.match(key)
        if match is not None and match["adapter"] == name and match["prefix"] == prefix:
            params[f"encoder.layer.{match['layer']}.{match['module']}.{match['param']}"] = param
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        detail = (f"missing {_few(missing)}" if missing else "") + ("; " if missing and unexpected else "") + (
            f"not in the backbone {_few(unexpected)}" if unexpected else "")
        raise StepstoneError(f"cannot import '{path}' onto backbone '{backbone}' "
                             f"({model.config.num_hidden_layers} layers; the adapter has "
                             f"{len(layers)}): {detail}")
    wrong = [f"{k} {list(t.shape)} vs {list(params[k].shape)}" for k, t in tensors.items()
             if t.shape != params[k].shape]
    if wrong:
        raise StepstoneError(f"cannot import '{path}': it does not fit backbone '{backbone}' "
                             f"(adapter vs backbone shapes: {_few(wrong)})")
    with torch.no_grad():
        for key, tensor in tensors.items():
            params[key].copy_(tensor.to(params[key].dtype))


def _parameters(model: Any, name: str, heads: list[str]) -> int:
    from ..methods import adapter_kind_of_parameter

    owners = {("loras", name), *(("heads", h) for h in heads)}
    return sum(p.numel() for key, p in model.named_parameters() if adapter_kind_of_parameter(key) in owners)


def _import_manifest(name: str, path: Path, config: dict, spec: LoRASpec, source: dict | None,
                     backbone: BackboneRecord, parameters: int, backbone_parameters: int) -> Manifest:
    """A zoo-entry manifest: what train_run writes, with the exported entry's record where it came from
    stepstone, and `imported` saying where it came from."""
    from ..config import to_dict

    method = MethodSpec(kind="lora", lora=spec)
    heads = bool(source and source["tasks"])
    if heads:
        tasks = tuple(replace(TaskRecord.from_json(r), head=head_name(name, r["name"], i))
                      for i, r in enumerate(source["tasks"]))
        task = tasks[0]
    else:
        # no head: nothing to evaluate on a task; '-' reads as "none" in `stepstone zoo list`
        tasks, task = (), TaskRecord("-", None)
    origin = source or {}
    spec_record = origin.get("spec") or {"backbone": to_dict(backbone.spec()), "method": to_dict(method)}
    return Manifest.new(
        kind=Kind.ADAPTER, name=name, backbone=backbone, method=MethodRecord.of(method), task=task, tasks=tasks,
        composition=None, init_from=None, mode="adapter", spec=spec_record, seed=origin.get("seed"),
        data=origin.get("data"),
        trainable=TrainableRecord(parameters, 100.0 * parameters / backbone_parameters, backbone_parameters),
        metrics=origin.get("metrics") if heads else {"dev": {}, "best_epoch": None, "main": None},
        history=origin.get("history", []) if heads else [],
        train_seconds=origin.get("train_seconds"), peak_rss_mb=origin.get("peak_rss_mb"),
        imported={
            "format": Format.PEFT.value,
            "source": str(path.resolve()),
            "sha256": {f: sha256(path / f) for f in (PEFT_CONFIG, PEFT_WEIGHTS)},
            "peft_config": config,
            "stepstone_entry": origin.get("name"),
            "heads": heads,
        })


# ---------------------------------------------------------------------------------------------- helpers


def _lora_config_class() -> Any:
    """peft's LoraConfig. Importing peft imports bitsandbytes, which warns on AVX512-BF16 CPUs about an optional
    kernel package stepstone does not use (stepstone.methods quiets the same logger)."""
    logging.getLogger("bitsandbytes.backends.cpu").setLevel(logging.ERROR)
    from peft import LoraConfig

    return LoraConfig


def _few(items: list[str], n: int = 3) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")

