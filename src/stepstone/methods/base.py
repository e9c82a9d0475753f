"""What an adapter method is, as one frozen record, and the registry that holds every method once.

A method module (bottleneck.py, lora.py, full.py, ...) defines its settings dataclass and registers one
`Method`; nothing else in stepstone names a method. Composition rules (stepstone.composition) match on the
method's `family`, so a new method of an existing family composes without touching the rule table.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Callable

from ..registry import Registry


class Family(str, Enum):
    """Where a method's update lives; composition rules are written per family."""

    BOTTLENECK = "bottleneck"  # a module after a sublayer, applied to its output
    LORA = "lora"  # an additive update of linear layers' weights
    SCALING = "scaling"  # learned vectors rescaling linear layers' outputs ((IA)^3): no additive update
    FULL = "full"  # the backbone's own weights

    @property
    def label(self) -> str:
        """How tables and messages name the family."""
        return {"lora": "LoRA"}.get(self.value, self.value)


def _fits_anything(settings: Any, hidden: int) -> None:
    """Settings that cannot clash with the backbone's shape."""


def _no_sites(settings: Any) -> tuple[str, ...]:
    return ()


def check_leave_out(method: str, leave_out: int) -> None:
    """The settings-level check of a method's `leave_out` field: how many of the backbone's LOWEST layers
    (0..k-1) get no adapter (AdapterDrop, Rücklé et al. 2021, who drop the first 5 of 12 with little loss;
    the adapters library's `leave_out`). 0 (the default) puts an adapter in every layer; the layer count
    is checked when the backbone is loaded (`check_layers`). It changes the model; with the backbone's
    dropout off the layers below the adapters are a pure function of the input, which
    `train.cache_frozen_layers` exploits."""
    if leave_out < 0:
        raise ValueError(f"{method}.leave_out must be >= 0 (the number of lowest layers without an adapter), "
                         f"got {leave_out}")


def check_layers(method: str, leave_out: int, layers: int) -> None:
    """Refuse a `leave_out` that leaves no layer with an adapter."""
    from ..errors import StepstoneError

    if leave_out >= layers:
        raise StepstoneError(f"method.{method}.leave_out is {leave_out}, but the backbone has {layers} layers: "
                             f"no layer would hold an adapter; use 0 to {layers - 1}")


def leave_out_layers(leave_out: int) -> list[int]:
    """The adapters library's `leave_out`: the indexes of the lowest `leave_out` layers."""
    return list(range(leave_out))


def without_default_leave_out(settings: Any) -> dict:
    """A settings record as configs and manifests hold it: `leave_out` only where it is set (>= 1), so every
    config and manifest written before the setting existed reads, and is written, as before."""
    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.init}
    if fields.get("leave_out") == 0:
        del fields["leave_out"]
    return fields


@dataclass(frozen=True)
class Method:
    """One adapter method.

    name: the `method.kind` value. family: where the update lives (see `Family`). settings: the frozen
    settings dataclass (`method.<name>` in configs), None for a method without settings.
    adapter_config: settings -> adapters-library config (None: nothing is added to the backbone).
    owners: the parameter containers in the adapters library's parameter names that hold its weights
        (e.g. 'adapters' in `...output.adapters.NAME.adapter_up.weight`).
    check_fits: (settings, backbone hidden size) -> None, raising StepstoneError for settings the
        backbone's shape would silently turn into something else.
    sites: settings -> the backbone modules it updates (composition rules compare them).
    default_lr: the learning rate when train.lr is not set.
    composes: whether it can be a composition member or target.
    train_mode: the training mode of a standalone run ("adapter" or "full").
    doc: one line for help texts and the README.
    """

    name: str
    family: Family
    settings: type | None
    adapter_config: Callable[[Any], Any] | None
    owners: tuple[str, ...]
    default_lr: float
    composes: bool = True
    train_mode: str = "adapter"
    check_fits: Callable[[Any, int], None] = _fits_anything
    sites: Callable[[Any], tuple[str, ...]] = _no_sites
    doc: str = ""

    def __post_init__(self):
        if not isinstance(self.family, Family):
            raise ValueError(f"method '{self.name}': family must be a Family, got {self.family!r}")
        settings = self.settings
        if settings is not None and not (isinstance(settings, type) and dataclasses.is_dataclass(settings)):
            raise ValueError(f"method '{self.name}': settings must be a dataclass type")
        if (self.adapter_config is None) != (self.family is Family.FULL):
            raise ValueError(f"method '{self.name}': an adapter config is needed exactly when it adds an adapter")
        if self.default_lr <= 0:
            raise ValueError(f"method '{self.name}': default_lr must be > 0")
        if self.train_mode not in ("adapter", "full"):
            raise ValueError(f"method '{self.name}': train_mode must be adapter or full")

    def default_settings(self) -> Any:
        """The settings record with every default (None for a method without settings)."""
        return None if self.settings is None else self.settings()


METHODS: Registry[Method] = Registry("method")

# A config field holding a registered method name: the config builder checks it against METHODS and
# lists the valid names on a miss.
MethodName = Annotated[str, METHODS]


def register(method: Method) -> Method:
    return METHODS.register(method.name, method)


def method_of(kind: str) -> Method:
    """The registered method `kind`; an unknown name fails listing the valid ones."""
    return METHODS.get(kind)
