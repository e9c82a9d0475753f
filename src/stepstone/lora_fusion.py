"""Fuse over LoRA members: learned per-layer, per-token weights over the members' low-rank updates.

The adapters library's Fuse (AdapterFusion) mixes bottleneck adapter *outputs* and raises
NotImplementedError for LoRA. This module is its LoRA counterpart. At every LoRA-wrapped linear layer
(adapters' LoRALinear) the members update, a gate over the n members computes, per token,

    w(x) = softmax(G x + c)            G: n x d_in, c: n   (the layer's input x)
    y    = base(x) + sum_i w_i(x) * delta_i(x)

where base(x) is what the layer computes on its own (the frozen W x + b plus whatever the active adapters
setup adds there: the target LoRA's update s_t B_t A_t x, nothing for a bottleneck target, which sits
after the FFN) and delta_i(x) = s_i B_i A_i dropout_i(x) is member i's update computed by the adapters
library's own LoRA module (`module.loras[member](None, x)`: its scaling alpha / r, its dropout). Trained
like AdapterFusion: members frozen, the gates and the target adapter (and its head) learn.

Gate choice. G and c start at zero, so training starts from the uniform mixture (the mean of the
members' updates) exactly, and a gate fixed one-hot on member k is exactly Stack(k, target). A linear
router on the layer input (mixture-of-LoRA-experts style) is used instead of AdapterFusion's
query / key / value attention because (1) the weights depend on x only, so they are known before any
member is evaluated and a zero weight can skip its member; (2) it costs n x (d_in + 1) parameters per
layer, against AdapterFusion's 3 d^2 (75.5M on XLM-R Large); (3) attention's value matrix would
transform the mixed update, and the fused result would no longer be a weighted sum of the members'
updates, the property the numeric tests pin.

Parameters live on the wrapped layer as `<layer>.lora_fusion.<name>.weight|bias` (owner
("lora_fusion", name) in `methods.adapter_kind_of_parameter`); a forward hook on the layer adds the fused
update while the fusion is active (`activate_lora_fusion`). Members must all be plain additive LoRA
(composition_mode "add") updating the same modules; anything else is refused in one line.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .errors import StepstoneError
from .methods import LORA_FUSION_OWNER, fusion_name

CONTAINER = LORA_FUSION_OWNER  # the attribute on each LoRALinear, and the owner kind in parameter names
CONFIG_FILE = "lora_fusion_config.json"
WEIGHTS_FILE = "lora_fusion.safetensors"
FORMAT_VERSION = 1
GATE = "softmax(linear(x))"


class LoRAFusionGates(torch.nn.ModuleDict):
    """The gates of every LoRA fusion at one LoRA-wrapped linear layer (name -> Linear(d_in, n)), and
    the state the layer's forward hook reads: each fusion's members, the active fusion, fixed weights."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, tuple[str, ...]] = {}
        self.fixed: dict[str, tuple[float, ...]] = {}
        self.active: str | None = None


# ------------------------------------------------------------------------------------------- members
def _member_problem(model: Any, name: str) -> str | None:
    """Why adapter `name` cannot be a member of a LoRA fusion, or None."""
    config = model.adapters_config.get(name)
    if config is None:
        return f"there is no adapter named '{name}' in the model"
    kind = getattr(config, "architecture", None) or "bottleneck"  # bottleneck configs have architecture None
    if kind == "bottleneck":
        return (f"'{name}' is a bottleneck adapter: it transforms the layer's output (h + up(f(down(h)))) instead "
                f"of adding a low-rank update to a linear layer, so there is no update to weight; fuse bottleneck "
                f"adapters with AdapterFusion (every member bottleneck)")
    if kind != "lora":
        return f"'{name}' is a {kind} adapter: it adds no low-rank update to a linear layer, so there is none to weight"
    if config.composition_mode != "add":
        return (f"'{name}' is an (IA)^3-style LoRA (composition_mode '{config.composition_mode}'): it rescales the "
                f"layer's output instead of adding an update, so there is no additive delta to weight")
    for flag, what in (("use_gating", "gating"), ("use_dora", "DoRA"), ("vera_d", "VeRA"), ("vera_b", "VeRA")):
        if getattr(config, flag, None):
            return (f"'{name}' uses {what}: its update is not the plain additive s B A x the gate weights "
                    f"(use plain LoRA members)")
    return None


def _lora_linears(model: Any) -> Iterator[tuple[str, Any]]:
    from adapters.methods.lora import LoRALinear

    for path, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield path, module


def _short(path: str) -> str:
    """'roberta.encoder.layer.3.attention.self.query' -> 'attention.self.query' (the module in every layer)."""
    return re.sub(r"^.*?\.layer\.\d+\.", "", path)


def fused_layers(model: Any, members: Sequence[str]) -> dict[str, Any]:
    """Path -> LoRALinear for every layer the members update; refuses (one StepstoneError line) members
    that are not plain additive LoRA adapters or that do not update the same modules."""
    members = tuple(members)
    if not members or len(set(members)) != len(members):
        raise StepstoneError(f"Fuse over LoRA members needs one or more distinct members, got {list(members)}")
    for name in members:
        problem = _member_problem(model, name)
        if problem is not None:
            raise StepstoneError(f"Fuse over LoRA members takes plain LoRA adapters only: {problem}")
    layers = {path: m for path, m in _lora_linears(model) if any(name in m.loras for name in members)}
    updated = {name: {path for path, m in layers.items() if name in m.loras} for name in members}
    if any(paths != set(layers) for paths in updated.values()):
        detail = "; ".join(f"{name}: {', '.join(sorted({_short(p) for p in paths}))}"
                           + (f" in {len(paths)} layers" if paths else "") for name, paths in updated.items())
        raise StepstoneError(f"LoRA members of one Fuse must update the same modules ({detail})")
    if not layers:
        raise StepstoneError(f"the LoRA members {', '.join(members)} update no linear layer of the model")
    from adapters.methods.lora import LoRA

    for path, module in layers.items():
        odd = [name for name in members if type(module.loras[name]) is not LoRA]
        if odd:
            raise StepstoneError(f"Fuse over LoRA members takes plain LoRA adapters only: '{odd[0]}' is a "
                                 f"{type(module.loras[odd[0]]).__name__} at {path}")
    return layers


# ------------------------------------------------------------------------------------------- install
def add_lora_fusion(model: Any, members: tuple[str, ...], name: str) -> int:
    """Add the gates of LoRA fusion `name` over `members` (inactive; see `activate_lora_fusion`) to every
    LoRA-wrapped linear layer the members update; returns how many layers got a gate. Each gate is a
    Linear(d_in, n) with zero weight and bias: uniform weights 1/n at the start."""
    if not name or "." in name:
        raise StepstoneError(f"invalid LoRA fusion name '{name}': it must be non-empty and hold no '.'")
    layers = fused_layers(model, members)
    if any(name in _gates(module) for module in layers.values() if hasattr(module, CONTAINER)):
        raise StepstoneError(f"the model already has a LoRA fusion named '{name}'")
    for module in layers.values():
        gates = _gates(module, create=True)
        reference = module.loras[members[0]].lora_A  # dtype/device of the LoRA path (the weight may be quantised)
        gate = torch.nn.Linear(module.in_features, len(members), device=reference.device, dtype=reference.dtype)
        torch.nn.init.zeros_(gate.weight)
        torch.nn.init.zeros_(gate.bias)
        gates[name] = gate
        gates.members[name] = tuple(members)
    return len(layers)


def _gates(module: Any, create: bool = False) -> LoRAFusionGates:
    gates = getattr(module, CONTAINER, None)
    if gates is None and create:
        gates = LoRAFusionGates()
        setattr(module, CONTAINER, gates)  # a submodule: parameters named <layer>.lora_fusion.<name>.*
        # A module-level function (no closure over the model): survives model.to(...) and copy.deepcopy.
        module.register_forward_hook(_fuse_hook)
    return gates


def _containers(model: Any, name: str) -> list[LoRAFusionGates]:
    found = [gates for _, m in _lora_linears(model) if (gates := getattr(m, CONTAINER, None)) is not None
             and name in gates]
    if not found:
        raise StepstoneError(f"the model has no LoRA fusion named '{name}' (add it with add_lora_fusion)")
    return found


def lora_fusion_members(model: Any, name: str) -> tuple[str, ...]:
    return _containers(model, name)[0].members[name]


def delete_lora_fusion(model: Any, name: str) -> None:
    """Remove fusion `name`'s gates (and its state) from every layer."""
    for gates in _containers(model, name):
        del gates[name]
        gates.members.pop(name)
        gates.fixed.pop(name, None)
        if gates.active == name:
            gates.active = None


def activate_lora_fusion(model: Any, name: str | None) -> None:
    """Make fusion `name` the one every gated layer adds (None: none). Independent of the adapters
    library's active setup, which gives base(x): activate the target alone there (`methods.activate`),
    never the members (the layer refuses to count a member twice)."""
    if name is not None:
        _containers(model, name)
    for _, module in _lora_linears(model):
        gates = getattr(module, CONTAINER, None)
        if gates is not None:
            gates.active = name if name in gates else None


@contextmanager
def fixed_gate(model: Any, name: str, weights: Sequence[float]) -> Iterator[None]:
    """Inside the block, fusion `name` uses the given weights (one per member, the same at every token and
    layer) instead of softmax(gate(x)); a member with weight exactly 0 is not evaluated at all (so a
    one-hot gate draws the same dropout masks as Stack(member, target)). For tests and analysis."""
    containers = _containers(model, name)
    n = len(containers[0].members[name])
    values = tuple(float(w) for w in weights)
    if len(values) != n or not all(torch.isfinite(torch.tensor(values))):
        raise StepstoneError(f"fixed gate of LoRA fusion '{name}': expected {n} finite weights, got {list(weights)}")
    saved = [gates.fixed.get(name) for gates in containers]
    for gates in containers:
        gates.fixed[name] = values
    try:
        yield
    finally:
        for gates, old in zip(containers, saved):
            if old is None:
                gates.fixed.pop(name, None)
            else:
                gates.fixed[name] = old


def _fuse_hook(module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """base(x) (the layer's own output) + sum_i w_i(x) delta_i(x) while a fusion is active here."""
    gates: LoRAFusionGates = getattr(module, CONTAINER)
    name = gates.active
    if name is None:
        return None
    x, members = args[0], gates.members[name]
    _refuse_double_count(module, members, name)
    fixed = gates.fixed.get(name)
    if fixed is None:
        w = torch.softmax(gates[name](x), dim=-1)
        weights: list[Any] = [w[..., i:i + 1] for i in range(len(members))]
    else:
        weights = list(fixed)
    fused = None
    for member, weight in zip(members, weights):
        if isinstance(weight, float) and weight == 0.0:
            continue
        delta, _ = module.loras[member](None, x)  # the library's own update: dropout, s B A x
        term = delta * weight
        fused = term if fused is None else fused + term
    return output if fused is None else output + fused


def _refuse_double_count(module: Any, members: tuple[str, ...], name: str) -> None:
    setup = module.get_active_setup()
    twice = sorted(set(members) & (setup.flatten() if setup is not None else set()))
    if module.merged in members:
        twice.append(module.merged)
    if twice:
        raise StepstoneError(f"LoRA fusion '{name}' is active while its member '{twice[0]}' is also active (or "
                             f"merged) in the adapters setup: its update would count twice; activate the target "
                             f"alone")


def trainable_owners(name: str, target: str) -> frozenset[tuple[str, str]]:
    """The parameter owners (`methods.adapter_kind_of_parameter`) training a LoRA fusion unfreezes: its gates
    and the target adapter (LoRA or bottleneck); the head(s) come on top as for every mode. No extra loss:
    the softmax needs no regulariser like AdapterFusion's value matrix."""
    return frozenset({(CONTAINER, name), ("loras", target), ("adapters", target)})


# ------------------------------------------------------------------------------------------- save / load
def _expected_shapes(model: Any, members: tuple[str, ...], name: str) -> dict[str, tuple[int, ...]]:
    """The tensors fusion `name` over `members` has (or would have) in `model`, without adding it."""
    shapes = {}
    for path, module in fused_layers(model, members).items():
        shapes[f"{path}.{CONTAINER}.{name}.weight"] = (len(members), module.in_features)
        shapes[f"{path}.{CONTAINER}.{name}.bias"] = (len(members),)
    return shapes


def _renamed(shapes: dict, old: str, new: str) -> dict:
    return {key.replace(f".{CONTAINER}.{old}.", f".{CONTAINER}.{new}."): value for key, value in shapes.items()}


def save_lora_fusion(model: Any, directory: Path, name: str) -> None:
    """`directory`/lora_fusion.safetensors (the gates, under their parameter names) + lora_fusion_config.json
    (members, gate, modules and gate shapes); each file written atomically; never pickle."""
    from safetensors.torch import save

    from .artifacts import to_json, write_bytes_atomic, write_text_atomic
    from .methods import adapter_kind_of_parameter

    members = lora_fusion_members(model, name)
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()
               if adapter_kind_of_parameter(key) == (CONTAINER, name)}
    modules = {key[:-len(f".{CONTAINER}.{name}.weight")]: list(value.shape) for key, value in tensors.items()
               if key.endswith(".weight")}
    config = {"format_version": FORMAT_VERSION, "kind": CONTAINER, "name": name, "members": list(members),
              "gate": GATE, "num_members": len(members), "modules": modules}
    directory = Path(directory)
    write_bytes_atomic(directory / WEIGHTS_FILE, save(tensors))
    write_text_atomic(directory / CONFIG_FILE, to_json(config))


def load_lora_fusion(model: Any, directory: Path, members: tuple[str, ...], name: str) -> None:
    """Add fusion `name` over `members` and load its gates from `directory`, strictly: the config must fuse
    exactly `members` over the modules they update, and the weights file must hold exactly the gates'
    tensors with their shapes; anything else is one StepstoneError line naming the file (and tensor),
    raised before the model is changed. The fusion may have been saved under another name."""
    from safetensors.torch import load_file

    from .integrity import compare_tensors, tensor_shapes

    directory, members = Path(directory), tuple(members)
    config = _read_config(directory / CONFIG_FILE, members)
    saved = config["name"]
    expected = _expected_shapes(model, members, name)
    modules = {key[:-len(f".{CONTAINER}.{name}.weight")]: list(shape) for key, shape in expected.items()
               if key.endswith(".weight")}
    _compare_modules(directory / CONFIG_FILE, config["modules"], modules)
    weights = directory / WEIGHTS_FILE
    compare_tensors(weights, tensor_shapes(weights), _renamed(expected, name, saved))  # named as in the file
    tensors = _renamed(load_file(str(weights)), saved, name)
    add_lora_fusion(model, members, name)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            params[key].copy_(value)


def _compare_modules(file: Path, saved: dict, expected: dict) -> None:
    for key in sorted(set(saved) | set(expected)):
        if key not in saved:
            raise StepstoneError(f"{file}: no gate for {key}, which the members update")
        if key not in expected:
            raise StepstoneError(f"{file}: a gate for {key}, which the members do not update")
        if saved[key] != expected[key]:
            raise StepstoneError(f"{file}: the gate of {key} has shape {saved[key]}, the model's is {expected[key]}")


def _read_config(file: Path, members: tuple[str, ...]) -> dict:
    from .artifacts import read_json

    config = read_json(file)
    fields = {"format_version": int, "name": str, "members": list, "modules": dict}
    bad = [k for k, kind in fields.items() if not isinstance(config, dict) or not isinstance(config.get(k), kind)]
    if bad:
        raise StepstoneError(f"{file}: not a LoRA fusion config ('{bad[0]}' is missing or of the wrong type)")
    if config["format_version"] != FORMAT_VERSION:
        raise StepstoneError(f"{file}: format_version {config['format_version']}, this stepstone reads "
                             f"{FORMAT_VERSION}")
    if config["members"] != list(members):
        raise StepstoneError(f"{file}: fuses {config['members']}, but the members are {list(members)}")
    if config.get("gate") != GATE:
        raise StepstoneError(f"{file}: gate {config.get('gate')!r}, this stepstone computes {GATE!r}")
    return config


# ------------------------------------------------------------------------------- as a composition's layer
# composition.LAYERS[Semantics.LORA_FUSION]: the fusion of a run is named like AdapterFusion's layer
# (methods.fusion_name: 'a,b'), so the callers pass the members only.
def add_layer(model: Any, members: tuple[str, ...]) -> None:
    add_lora_fusion(model, tuple(members), fusion_name(tuple(members)))


def save_layer(model: Any, directory: Path, members: tuple[str, ...]) -> None:
    save_lora_fusion(model, directory, fusion_name(tuple(members)))


def load_layer(model: Any, directory: Path, members: tuple[str, ...]) -> None:
    load_lora_fusion(model, directory, tuple(members), fusion_name(tuple(members)))


def activate_layer(model: Any, members: tuple[str, ...]) -> None:
    activate_lora_fusion(model, fusion_name(tuple(members)))


def check_files(directory: Path, members: tuple[str, ...]) -> None:
    """The saved fusion in `directory` fuses `members` and has its weights file: JSON only, before any model
    is loaded (`integrity.check_artifact`); the gates' shapes are checked against the model on load."""
    directory = Path(directory)
    _read_config(directory / CONFIG_FILE, tuple(members))
    if not (directory / WEIGHTS_FILE).is_file():
        raise StepstoneError(f"'{directory / WEIGHTS_FILE}' is missing")
