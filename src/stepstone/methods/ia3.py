"""(IA)^3: learned vectors that rescale the outputs of chosen linear layers (adapters' IA3Config, Liu et al.
2022). Not an additive update: composition rules treat it as its own family (SCALING)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Family, Method, check_leave_out, leave_out_layers, register, without_default_leave_out
from .lora import LoRATarget

_ATTN = {LoRATarget.Q: "q", LoRATarget.K: "k", LoRATarget.V: "v"}


@dataclass(frozen=True)
class IA3Spec:
    """(IA)^3 adapter (adapters' IA3Config).

    target_modules: the linear layers whose outputs are rescaled, one learned vector each: k, v and the FFN
        up-projection (intermediate), as in Liu et al. (2022) and IA3Config. The adapters library scales the
        up-projection's output before the activation (the paper scales the activation's output).
    The vectors start at ones (IA3Config's init_weights 'ia3', the paper's init), so a fresh adapter is the
    identity. No size setting: a vector per layer always has the layer's width.
    leave_out: the number of LOWEST layers (0..k-1) with no adapter (AdapterDrop, Rücklé et al. 2021; adapters'
        `leave_out`); 0 = every layer; below the backbone's layer count (see methods.base.check_leave_out).
    """

    target_modules: tuple[LoRATarget, ...] = (LoRATarget.K, LoRATarget.V, LoRATarget.INTERMEDIATE)
    leave_out: int = 0

    def __post_init__(self):
        check_leave_out("ia3", self.leave_out)
        if not self.target_modules:
            raise ValueError("ia3.target_modules must name at least one of: " + ", ".join(t.value for t in LoRATarget))

    def to_config(self) -> dict:
        """Config / manifest form: `leave_out` only where set, so older files read and write as before."""
        return without_default_leave_out(self)


def _config(settings: IA3Spec) -> Any:
    from adapters import IA3Config

    attn = [_ATTN[t] for t in settings.target_modules if t in _ATTN]
    return IA3Config(attn_matrices=attn or ["k"], selfattn_lora=bool(attn),
                     intermediate_lora=LoRATarget.INTERMEDIATE in settings.target_modules,
                     output_lora=LoRATarget.OUTPUT in settings.target_modules,
                     leave_out=leave_out_layers(settings.leave_out))


IA3 = register(Method(
    name="ia3", family=Family.SCALING, settings=IA3Spec, adapter_config=_config, owners=("loras",),
    # Liu et al. (2022) train (IA)^3 with lr 3e-3 (T-Few); a vector per layer needs a larger step than a matrix
    default_lr=3e-3, sites=lambda s: tuple(sorted(t.value for t in s.target_modules)),
    doc="learned vectors rescaling keys, values and FFN activations (Liu et al. 2022)"))
