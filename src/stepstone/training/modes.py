"""What is trained, as data: one registered `TrainingMode` per mode. A mode names the parameters it trains
(from the model's parameter names and their owners, never from requires_grad), the optimizer parameter
groups with the TrainSpec field that holds each group's learning rate, and an optional extra loss. The
loop only reads these fields, so a new composition block registers its own mode in its own module:

    MY_MODE = register_mode(TrainingMode("my-block", layer=Layer("my_block_layer", "my-block layer"),
                                         groups=(ParamGroup("lr"), ParamGroup("fusion_lr", ("my_block_layer",))),
                                         extra_loss=None))
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from ..methods import FUSION_OWNER, LORA_FUSION_OWNER, adapter_kind_of_parameter, adapter_owners, fusion_regularization
from ..registry import Registry
from ..specs import TrainSpec



@dataclass(frozen=True)
class ParamGroup:
    """One optimizer parameter group: the trainable parameters whose owner kind
    (`methods.adapter_kind_of_parameter`) is in `owners`; `owners=None` takes those no other group of the
    mode takes. Its learning rate is the TrainSpec field named `lr`."""

    lr: str
    owners: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        rates = sorted(f.name for f in fields(TrainSpec) if f.name.endswith("lr"))
        if self.lr not in rates:
            raise ValueError(f"parameter group lr '{self.lr}' is not a TrainSpec learning rate (valid: {rates})")
        if self.owners is not None and not self.owners:
            raise ValueError("a parameter group's owners are None (the rest) or at least one owner kind")


@dataclass(frozen=True)
class Layer:
    """A composition layer a mode trains besides the target adapter (e.g. the Fuse layer): the owner kind of
    its parameters, and what messages call it."""

    owner: str
    what: str


@dataclass(frozen=True)
class TrainingMode:
    """What one mode trains. `name` is recorded in manifests ("mode"). `every_parameter`: the whole model
    (full fine-tuning); else the target adapter (`target_owners`; None: the owner kinds of every registered
    adapter method, `methods.adapter_owners()`), its heads, and `layer` when set (named
    at `trainable_names`). `groups`: the optimizer's parameter groups, in order; empty ones are dropped.
    `extra_loss(model)`: a tensor added to every micro-batch's loss (e.g. AdapterFusion's regulariser)."""

    name: str
    every_parameter: bool = False
    target_owners: tuple[str, ...] | None = None
    layer: Layer | None = None
    groups: tuple[ParamGroup, ...] = (ParamGroup("lr"),)
    extra_loss: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a training mode needs a name")
        if [g.owners for g in self.groups].count(None) != 1:
            raise ValueError(f"training mode '{self.name}': exactly one parameter group takes the rest (owners=None)")

    @property
    def value(self) -> str:
        """The name, spelled like the enum this replaced (`mode.value` in manifests and call sites)."""
        return self.name


MODES: Registry[TrainingMode] = Registry("training mode")


def register_mode(mode: TrainingMode) -> TrainingMode:
    return MODES.register(mode.name, mode)


class Mode:
    """The built-in modes, by short name. ADAPTER: the target adapter + its head. FUSION: additionally the
    Fuse layer over frozen members, at `train.fusion_lr`, with the AdapterFusion value regulariser (only
    adapters' AdapterTrainer adds it, so a custom loop must). FULL: every weight of the backbone and head."""

    ADAPTER = register_mode(TrainingMode("adapter"))
    FUSION = register_mode(TrainingMode(
        "fusion", layer=Layer(FUSION_OWNER, "fusion layer"),
        groups=(ParamGroup("lr"), ParamGroup("fusion_lr", (FUSION_OWNER,))),
        extra_loss=fusion_regularization))
    FULL = register_mode(TrainingMode("full", every_parameter=True))
    # Fuse over LoRA members (stepstone.lora_fusion): the gates at train.fusion_lr like AdapterFusion's layer
    # (both are mixing weights over frozen members trained with a fresh target, so a run switching the member
    # family keeps its rates); no extra loss: a softmax over the members has no value matrix to hold near I.
    # Registered here, not in lora_fusion: that module sits in the model layer, below training.
    LORA_FUSION = register_mode(TrainingMode(
        "lora-fusion", layer=Layer(LORA_FUSION_OWNER, "LoRA fusion gates"),
        groups=(ParamGroup("lr"), ParamGroup("fusion_lr", (LORA_FUSION_OWNER,)))))


@dataclass(frozen=True)
class Trainable:
    names: frozenset[str]
    count: int  # trainable parameters
    backbone: int  # parameters of the backbone alone

    @property
    def percent(self) -> float:
        return 100.0 * self.count / self.backbone

    def describe(self) -> str:
        return f"{self.count:,} trainable parameters ({self.percent:.2f}% of the backbone's {self.backbone:,})"


def trainable_names(model: Any, mode: TrainingMode, target: str, layer: str | None = None,
                    heads: tuple[str, ...] | None = None) -> frozenset[str]:
    """Names of the parameters `mode` trains: computed from names, never from current requires_grad.
    `layer` names the mode's composition layer (the fusion layer's name); `heads` defaults to the head
    named like the target adapter."""
    if mode.every_parameter:
        return frozenset(name for name, _ in model.named_parameters())
    owners = {*((kind, target) for kind in (mode.target_owners or adapter_owners())), *(("heads", h) for h in (heads or (target,)))}
    if mode.layer is not None:
        if layer is None:
            raise ValueError(f"the {mode.name} mode needs the {mode.layer.what}'s name")
        owners.add((mode.layer.owner, layer))
    return frozenset(n for n, _ in model.named_parameters() if adapter_kind_of_parameter(n) in owners)


def set_trainable(model: Any, names: frozenset[str], backbone_params: int) -> Trainable:
    """Freeze everything but `names` (other heads included: adapters' train_adapter leaves them
    trainable) and assert the result."""
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
        count += param.numel() if name in names else 0
    actual = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
    assert actual == names and names, f"trainable set mismatch: {sorted(actual ^ names)[:5]}"
    return Trainable(names, count, backbone_params)


def param_groups(mode: TrainingMode, names: frozenset[str], params: dict[str, Any],
                 spec: TrainSpec) -> list[dict]:
    """The optimizer's parameter groups of `mode` over the trainable `names` (each group's parameters in
    name order; groups in the mode's order, empty ones dropped), with their learning rates from `spec`."""
    def owner(name: str) -> str:
        return (adapter_kind_of_parameter(name) or ("",))[0]

    taken = {kind for g in mode.groups for kind in g.owners or ()}
    groups = []
    for group in mode.groups:
        chosen = [params[n] for n in sorted(names)
                  if (owner(n) not in taken if group.owners is None else owner(n) in group.owners)]
        if chosen:
            groups.append({"params": chosen, "lr": getattr(spec, group.lr)})
    return groups
