"""Houlsby double bottleneck adapter (adapters' DoubleSeqBnConfig, Houlsby et al. 2019): one bottleneck after
the attention block and one after the FFN of every layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Family, Method, check_leave_out, leave_out_layers, register, without_default_leave_out
from .bottleneck import NonLinearity, check_reduction_factor

SITES = ("after attention", "after the FFN")


@dataclass(frozen=True)
class HoulsbySpec:
    """Houlsby double bottleneck adapter (adapters' DoubleSeqBnConfig).

    reduction_factor: hidden size / bottleneck size of both bottlenecks; 16, the adapters library's
        DoubleSeqBnConfig default (Houlsby et al. 2019 searched bottleneck sizes 8, 64, 256 instead of a
        factor); at most the backbone's hidden size (checked when it is loaded).
    non_linearity: activation inside the bottlenecks; swish, the DoubleSeqBnConfig default.
    leave_out: the number of LOWEST layers (0..k-1) with no adapter (AdapterDrop, Rücklé et al. 2021; adapters'
        `leave_out`); 0 = every layer; below the backbone's layer count (see methods.base.check_leave_out).
    Each bottleneck acts on its sublayer's output before the residual and layer norm (h + up(f(down(h))),
    the paper's placement; the `bottleneck` method applies the layer norm first).
    """

    reduction_factor: int = 16
    non_linearity: NonLinearity = NonLinearity.SWISH
    leave_out: int = 0

    def __post_init__(self):
        check_leave_out("houlsby", self.leave_out)
        if self.reduction_factor < 1:
            raise ValueError("houlsby.reduction_factor must be >= 1")

    def to_config(self) -> dict:
        """Config / manifest form: `leave_out` only where set, so older files read and write as before."""
        return without_default_leave_out(self)


def _config(settings: HoulsbySpec) -> Any:
    from adapters import DoubleSeqBnConfig

    return DoubleSeqBnConfig(reduction_factor=settings.reduction_factor, non_linearity=settings.non_linearity.value,
                             leave_out=leave_out_layers(settings.leave_out))


def _check_fits(settings: HoulsbySpec, hidden: int) -> None:
    check_reduction_factor("houlsby", settings.reduction_factor, hidden, "both bottlenecks")


HOULSBY = register(Method(
    name="houlsby", family=Family.BOTTLENECK, settings=HoulsbySpec, adapter_config=_config,
    owners=("adapters",), default_lr=1e-4, check_fits=_check_fits, sites=lambda s: SITES,
    doc="double bottleneck adapter after attention and after the FFN (Houlsby et al. 2019)"))
