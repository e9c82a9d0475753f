"""Composition rules: what Stack and Fuse mean for each method, as data.

A target adapter is trained on top of zoo adapters ("members"). What the combination computes
depends on the block and on the methods involved; every supported cell is pinned by a numeric test
(tests/unit/test_composition.py) and documented in the README:

- Stack, bottleneck members, bottleneck target: SEQUENTIAL. In every layer the FFN output goes through
  m1, then m2, ..., then the target adapter (adapters' Stack).
- Stack with exactly one LoRA among members + target: PLACED. Bottlenecks sit after the FFN (in
  order), the LoRA update sits in the attention / FFN projections; the two never meet.
- Stack with several LoRAs and no bottleneck: SUM. Each linear layer computes
  W x + dW_1 x + ... + dW_target x: the intermediate updates stay applied and the target learns a
  residual on top (PEFT's semantics when several LoRA adapters are active). The adapters library's
  own Stack would *chain* LoRA branches (dW_target applied to dW_1 x, dropping dW_1 x itself); we
  do not use that. Implemented with adapters' Average block and un-normalised weights n, ..., n, so
  the mean of n updates times n is their sum. All LoRAs must update the same modules.
- Stack with several LoRAs and a bottleneck: refused (the engine cannot sum LoRAs around a bottleneck).
- Fuse, bottleneck members: FUSION. Stack(Fuse(m1, m2, ...), target): an AdapterFusion layer
  (attention over member outputs) per layer, then the target adapter (bottleneck or LoRA).
- Fuse with a LoRA member: refused. AdapterFusion mixes adapter *outputs*; the adapters library
  implements it for bottleneck adapters only.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Sequence

from .errors import StepstoneError
from .specs import Block, Composition, LoRASpec, MethodKind, MethodSpec


class Semantics(str, Enum):
    SEQUENTIAL = "sequential"
    PLACED = "placed"
    SUM = "sum"
    FUSION = "fusion"


@dataclass(frozen=True)
class Member:
    """A composition member as the rules need it: name, method, and LoRA settings if LoRA."""

    name: str
    method: MethodKind
    lora: LoRASpec | None = None


def semantics(block: Block, members: Sequence[Member], target: Member) -> Semantics:
    """Which composition a (block, member methods, target method) cell means; raises if unsupported."""
    if target.method is MethodKind.FULL or any(m.method is MethodKind.FULL for m in members):
        raise StepstoneError("full fine-tune runs cannot be composed: Stack and Fuse take adapters")
    loras = [m for m in (*members, target) if m.method is MethodKind.LORA]
    if block is Block.FUSE:
        bad = [m.name for m in members if m.method is MethodKind.LORA]
        if bad:
            raise StepstoneError(
                f"Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); "
                f"LoRA member(s): {', '.join(bad)}. Use Stack for LoRA adapters"
            )
        return Semantics.FUSION
    if len(loras) <= 1:
        return Semantics.PLACED if loras else Semantics.SEQUENTIAL
    if len(loras) < len(members) + 1:
        raise StepstoneError(
            "a Stack with several LoRA adapters cannot also hold a bottleneck adapter: "
            f"LoRA: {', '.join(m.name for m in loras)}; make every member LoRA, or keep one LoRA"
        )
    modules = {m.name: tuple(sorted(t.value for t in m.lora.target_modules)) for m in loras}
    if len(set(modules.values())) > 1:
        detail = "; ".join(f"{name}: {', '.join(mods)}" for name, mods in modules.items())
        raise StepstoneError(f"LoRA adapters in one Stack must update the same modules ({detail})")
    return Semantics.SUM


def refusal(block: Block, member_methods: Sequence[MethodSpec], target_method: MethodSpec) -> str | None:
    """Why `block` over members of these methods under a target of `target_method` is refused (None: allowed),
    by the rules of `semantics` (members named 'member 1', 'member 2', ... in the reason)."""
    members = [Member(f"member {i}", spec.kind, spec.lora) for i, spec in enumerate(member_methods, 1)]
    try:
        semantics(block, members, Member("target", target_method.kind, target_method.lora))
    except StepstoneError as err:
        return str(err)
    return None


def adapters_setup(composition: Composition | None, target: str, kind: Semantics | None) -> Any:
    """The adapters-library block that computes `kind` for these members and target."""
    from adapters.composition import Average, Fuse, Stack

    if composition is None:
        return target
    members = composition.members
    if kind is Semantics.FUSION:
        return Stack(Fuse(*members), target)
    if kind is Semantics.SUM:
        n = len(members) + 1
        return Average(*members, target, weights=[float(n)] * n, normalize_weights=False)
    return Stack(*members, target)


def describe(composition: Composition | None, target: str) -> str:
    """Human-readable setup, e.g. 'Stack(a, b, target)' or 'Fuse(a, b) + target'."""
    if composition is None:
        return target
    if composition.block is Block.FUSE:
        return f"Fuse({', '.join(composition.members)}) + {target}"
    return f"Stack({', '.join((*composition.members, target))})"


def parse(text: str) -> Composition:
    """'Stack(a, b)' or 'Fuse(a,b)' (case-insensitive) -> Composition."""
    import re

    match = re.fullmatch(r"\s*(\w+)\s*\(([^()]*)\)\s*", text)
    blocks = {b.value: b for b in Block}
    if not match or match.group(1).lower() not in blocks:
        raise StepstoneError(
            f"bad composition '{text}': expected Stack(NAME, ...) or Fuse(NAME, NAME, ...) over zoo entries"
        )
    inner = match.group(2).strip()
    members = tuple(m.strip() for m in inner.split(",")) if inner else ()
    if "" in members:
        raise StepstoneError(f"bad composition '{text}': empty member name")
    try:
        return Composition(blocks[match.group(1).lower()], members)
    except ValueError as err:
        raise StepstoneError(f"bad composition '{text}': {err}") from None
