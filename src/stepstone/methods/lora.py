"""LoRA: a low-rank additive update of chosen linear layers (adapters' LoRAConfig, Hu et al. 2021)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .base import Family, Method, check_leave_out, leave_out_layers, register, without_default_leave_out


class LoRATarget(str, Enum):
    """Linear layers a LoRA adapter can update, in adapters-library terms."""

    Q = "q"  # attention query
    K = "k"  # attention key
    V = "v"  # attention value
    INTERMEDIATE = "intermediate"  # FFN up-projection
    OUTPUT = "output"  # FFN down-projection


@dataclass(frozen=True)
class LoRASpec:
    """LoRA adapter (adapters' LoRAConfig).

    r: rank, 8 by default, at most the backbone's hidden size; alpha: scaling numerator (update scaled by
    alpha / r), 16 by default, > 0 (0 would zero the update, a negative one only flip its sign);
    dropout: on the LoRA input, 0.0; target_modules: which linear layers get an update, q and v as in
    Hu et al. (2021).
    leave_out: the number of LOWEST layers (0..k-1) with no adapter (AdapterDrop, Rücklé et al. 2021; adapters'
        `leave_out`); 0 = every layer; below the backbone's layer count (see methods.base.check_leave_out).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[LoRATarget, ...] = (LoRATarget.Q, LoRATarget.V)
    leave_out: int = 0

    def __post_init__(self):
        check_leave_out("lora", self.leave_out)
        if self.r < 1:
            raise ValueError("lora.r must be >= 1")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0 (got {self.alpha}): the update is scaled by alpha / r, so "
                             "0 switches it off")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("lora.dropout must be in [0, 1)")
        if not self.target_modules:
            raise ValueError("lora.target_modules must name at least one of: " + ", ".join(t.value for t in LoRATarget))

    def to_config(self) -> dict:
        """Config / manifest form: `leave_out` only where set, so older files read and write as before."""
        return without_default_leave_out(self)


_ATTN = {LoRATarget.Q: "q", LoRATarget.K: "k", LoRATarget.V: "v"}


def _config(settings: LoRASpec) -> Any:
    from adapters import LoRAConfig

    attn = [_ATTN[t] for t in settings.target_modules if t in _ATTN]
    return LoRAConfig(
        r=settings.r,
        alpha=settings.alpha,
        dropout=settings.dropout,
        attn_matrices=attn or ["q"],
        selfattn_lora=bool(attn),
        intermediate_lora=LoRATarget.INTERMEDIATE in settings.target_modules,
        output_lora=LoRATarget.OUTPUT in settings.target_modules,
        leave_out=leave_out_layers(settings.leave_out),
    )


def _check_fits(settings: LoRASpec, hidden: int) -> None:
    """A LoRA rank above the smaller side of the layers it updates (hidden_size for every target) adds
    parameters, not rank."""
    from ..errors import StepstoneError

    if settings.r > hidden:
        raise StepstoneError(f"method.lora.r is {settings.r}, larger than the backbone's hidden size {hidden}: "
                             f"the update of a layer with {hidden} inputs or outputs has rank at most {hidden}; "
                             f"use r <= {hidden}")


LORA = register(Method(
    name="lora", family=Family.LORA, settings=LoRASpec, adapter_config=_config, owners=("loras",),
    default_lr=1e-4, check_fits=_check_fits, sites=lambda s: tuple(sorted(t.value for t in s.target_modules)),
    doc="low-rank update of chosen linear layers (Hu et al. 2021)"))
