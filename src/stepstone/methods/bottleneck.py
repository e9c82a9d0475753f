"""Sequential bottleneck adapter (adapters' SeqBnConfig, Pfeiffer placement: after the FFN)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .base import Family, Method, check_leave_out, leave_out_layers, register, without_default_leave_out


class NonLinearity(str, Enum):
    RELU = "relu"
    GELU = "gelu"
    SWISH = "swish"
    TANH = "tanh"


@dataclass(frozen=True)
class BottleneckSpec:
    """Sequential bottleneck adapter (adapters' SeqBnConfig, Pfeiffer placement: after the FFN).

    reduction_factor: hidden size / bottleneck size; 16 as in AdapterFusion (Pfeiffer et al. 2021); at most
        the backbone's hidden size (checked when it is loaded).
    non_linearity: activation inside the bottleneck; relu as in AdapterFusion.
    leave_out: the number of LOWEST layers (0..k-1) with no adapter (AdapterDrop, Rücklé et al. 2021; adapters'
        `leave_out`); 0 = every layer; below the backbone's layer count (see methods.base.check_leave_out).
    """

    reduction_factor: int = 16
    non_linearity: NonLinearity = NonLinearity.RELU
    leave_out: int = 0

    def __post_init__(self):
        check_leave_out("bottleneck", self.leave_out)
        if self.reduction_factor < 1:
            raise ValueError("bottleneck.reduction_factor must be >= 1")

    def to_config(self) -> dict:
        """Config / manifest form: `leave_out` only where set, so older files read and write as before."""
        return without_default_leave_out(self)


def _config(settings: BottleneckSpec) -> Any:
    from adapters import SeqBnConfig

    return SeqBnConfig(reduction_factor=settings.reduction_factor, non_linearity=settings.non_linearity.value,
                       leave_out=leave_out_layers(settings.leave_out))


def check_reduction_factor(method: str, factor: int, hidden: int, bottlenecks: str = "the bottleneck") -> None:
    """The adapters library silently makes a bottleneck of hidden_size // reduction_factor = 0 units one
    unit wide: refuse a factor above the hidden size (`bottlenecks` names them in the message)."""
    from ..errors import StepstoneError

    if factor > hidden:
        raise StepstoneError(f"method.{method}.reduction_factor is {factor}, larger than the backbone's hidden "
                             f"size {hidden}: {bottlenecks} (hidden size / reduction factor) would have no units; "
                             f"use a reduction factor of at most {hidden}")


def _check_fits(settings: BottleneckSpec, hidden: int) -> None:
    check_reduction_factor("bottleneck", settings.reduction_factor, hidden)


BOTTLENECK = register(Method(
    name="bottleneck", family=Family.BOTTLENECK, settings=BottleneckSpec, adapter_config=_config,
    owners=("adapters",), default_lr=1e-4, check_fits=_check_fits, sites=lambda s: ("after the FFN",),
    doc="sequential bottleneck adapter after the FFN (Pfeiffer et al. 2021)"))
