"""Composition rules as data: which (block, member methods, target method) cells mean what.

A target adapter is trained on top of zoo adapters ("members"). What the combination computes depends
on the block and on the *families* of the methods involved (`stepstone.methods.Family`: where each
update lives), so a new method of an existing family composes with no edit here. `RULES` is the
capability table: each row matches a block, the member families (how many of each) and the target's
family, and gives a `Semantics` or the reason the cell is refused; the first matching row wins.
`BLOCKS` gives each block its own data (fewest members, the adapters-library setup of each semantics it
supports); `LAYERS` gives a semantics that trains a layer of its own (AdapterFusion) that layer: how it is
added, saved, loaded and which training mode trains it. Every supported cell is pinned by a numeric test
(tests/unit/test_composition.py, mapped in CELL_TESTS there); the README's table is `markdown_table()`.

- SEQUENTIAL: in every layer the FFN output goes through m1, then m2, ..., then the target (adapters' Stack);
  a method with a bottleneck after attention too (houlsby) adds its own there, alone or in order with the
  others that sit there. (IA)^3 members under an (IA)^3 target: each projection's output is rescaled by m1,
  ..., then the target, i.e. by the product of their vectors.
- PLACED: bottlenecks sit after their sublayers (in order), the one LoRA update, or the (IA)^3 scalings
  (multiplied), in the attention / FFN projections; the two never meet.
- SUM: each linear layer computes W x + dW_1 x + ... + dW_target x: the intermediate updates stay applied
  and the target learns a residual on top (PEFT's semantics when several LoRA adapters are active). The
  adapters library's own Stack would *chain* LoRA branches (dW_target applied to dW_1 x, dropping dW_1 x
  itself); we do not use that. Implemented with adapters' Average block and un-normalised weights
  n, ..., n, so the mean of n updates times n is their sum. All LoRAs must update the same modules.
- FUSION: Stack(Fuse(m1, m2, ...), target): an AdapterFusion layer (attention over member outputs) per
  layer, then the target adapter. AdapterFusion mixes adapter *outputs*; the adapters library implements
  it for bottleneck adapters only, and only for members with bottlenecks at the same places.
- AVERAGE: Stack(Average(m1, ..., mn), target) over bottlenecks: in every layer the weighted mean
  w_1 f_1(h) + ... + w_n f_n(h) of the members' outputs (each f_i includes the adapter's residual, so the
  residual enters once: the weights sum to 1), then the target. The adapters library's Average computes
  `mean_i(w_i h_i)` = (1/n) sum_i w_i h_i, so stepstone passes n w_i un-normalised.
- WEIGHTED_SUM: over LoRAs: each linear layer computes W x + w_1 dW_1 x + ... + w_n dW_n x + dW_target x
  (the target's update at full weight); an un-normalised adapters Average over members + target with
  weights (n+1) [w_1, ..., w_n, 1], as SUM. All LoRAs must update the same modules.
  Bottleneck and LoRA members together, or a target of the other family, are refused: the adapters
  library's Average averages the states of one layer kind, and a child of the other kind either leaves it
  empty (bottleneck members under a LoRA target: IndexError) or unnamed (KeyError).
- LORA_FUSION: Fuse over LoRA members (stepstone.lora_fusion): at every linear layer the members update,
  per-token softmax gates weigh the members' updates, added to what the layer computes with the target
  alone active (W x + dW_target x for a LoRA target, W x for a bottleneck target after the FFN).

- SCALING ((IA)^3) and LoRA adapters never share a Stack: both live in the adapters library's LoRA-wrapped
  linear layers, whose Stack chains the branches (a LoRA branch would be applied to the scaling vector
  instead of the layer's input).

A semantics with its own trained layer (AdapterFusion's attention, the LoRA-fusion gates) has a
`TrainedLayer` in `LAYERS`: the training mode that trains it, its run folder, and how it is added, saved,
loaded and activated. The training mode of a cell is chosen by its semantics (`training_mode`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import StepstoneError
from .methods import METHODS, Family, add_fusion, fusion_name, load_fusion, save_fusion
from .specs import Block, Composition


class Semantics(str, Enum):
    SEQUENTIAL = "sequential"
    PLACED = "placed"
    SUM = "sum"
    FUSION = "fusion"
    AVERAGE = "average"
    WEIGHTED_SUM = "weighted-sum"
    # hyphenated like its training mode ("lora-fusion"), the name manifests record for the same cell;
    # "lora_fusion" (underscore) is the Python-side owner / attribute name, where a hyphen cannot go
    LORA_FUSION = "lora-fusion"


MEANING = {
    Semantics.SEQUENTIAL: "in every layer the FFN output (and the attention output, for bottlenecks that sit there) "
                          "goes through m1, ..., then the target adapter; (IA)^3 scalings multiply",
    Semantics.PLACED: "bottlenecks after their sublayers in order; the LoRA update, or the (IA)^3 scalings "
                      "(multiplied), in their projections",
    Semantics.SUM: "each linear layer computes `W x + dW_1 x + ... + dW_target x` (PEFT's semantics); every "
                   "LoRA must update the same modules",
    Semantics.FUSION: "`Stack(Fuse(m1, m2, ...), target)`, AdapterFusion attention over member outputs, then "
                      "the target",
    Semantics.AVERAGE: "`Stack(Average(m1, ..., mn), target)`: in every layer the weighted mean `w_1 f_1(h) + ... + "
                       "w_n f_n(h)` of the members' outputs (weights given or uniform, normalised), then the target",
    Semantics.WEIGHTED_SUM: "each linear layer computes `W x + w_1 dW_1 x + ... + w_n dW_n x + dW_target x` "
                            "(weights given or uniform, normalised); every LoRA must update the same modules",
    Semantics.LORA_FUSION: "Fuse over LoRA members: each linear layer the members update computes "
                           "`base(x) + sum_i w_i(x) dW_i x`, `w(x) = softmax(G x + c)` per token (learned gates), "
                           "`base(x)` the layer with the target alone (`W x + dW_target x` for a LoRA target, "
                           "`W x` for a bottleneck target, which sits after the FFN); every member must update "
                           "the same modules",
}


@dataclass(frozen=True)
class Member:
    """A composition member (or target) as the rules need it: name, method name, its settings record."""

    name: str
    method: str
    settings: Any = None

    @property
    def family(self) -> Family:
        return METHODS.get(self.method).family


Count = tuple[int, "int | None"]  # (fewest, most; None = no limit)
SOME: Count = (1, None)
ONE: Count = (1, 1)
ANY_NUMBER: Count = (0, None)
ADAPTERS = frozenset({Family.BOTTLENECK, Family.LORA, Family.SCALING})


@dataclass(frozen=True)
class Rule:
    """One row of the capability table.

    name: the row's handle (tests map each supported row to the numeric tests that pin it).
    block: the block it is about (None: every block). members: how many members of each family; a family
    not named must be absent unless `others` is set. target: the target families it covers (None: any).
    outcome: the Semantics, or the refusal reason; a reason may name adapters with `{<family>_members}`
    (the members of that family) or `{<family>_all}` (members and target). check: a further condition
    of a supported cell: (members, target) -> refusal reason or None.
    """

    name: str
    block: Block | None
    members: Mapping[Family, Count]
    target: frozenset[Family] | None
    outcome: Semantics | str
    others: bool = False
    check: Callable[[Sequence[Member], Member], "str | None"] | None = None

    def matches(self, block: Block, members: Sequence[Member], target: Family) -> bool:
        if self.block is not None and block is not self.block:
            return False
        if self.target is not None and target not in self.target:
            return False
        families = [m.family for m in members]
        if not self.others and any(f not in self.members for f in families):
            return False
        return all(lo <= families.count(f) and (hi is None or families.count(f) <= hi)
                   for f, (lo, hi) in self.members.items())


def _differing_sites(adapters: Sequence[Member]) -> str | None:
    """'a: q, v; b: intermediate' when the adapters do not all sit at the same places (Method.sites), else None."""
    sites = {m.name: METHODS.get(m.method).sites(m.settings) for m in adapters}
    if len(set(sites.values())) > 1:
        return "; ".join(f"{name}: {', '.join(where)}" for name, where in sites.items())
    return None


def _same_sites(members: Sequence[Member], target: Member) -> str | None:
    """Summed LoRA updates must sit on the same modules (the Average block pairs them module by module)."""
    detail = _differing_sites((*members, target))
    return None if detail is None else f"LoRA adapters in one Stack must update the same modules ({detail})"


def _same_sites_in(block: str) -> Callable[[Sequence[Member], Member], "str | None"]:
    """`_same_sites` for another block's title."""
    def check(members: Sequence[Member], target: Member) -> str | None:
        reason = _same_sites(members, target)
        return None if reason is None else reason.replace("in one Stack", f"in one {block}")
    return check


def _same_member_sites(members: Sequence[Member], target: Member) -> str | None:
    """The gates pair the members' updates module by module (the target may update other modules: it is
    part of base(x)). The message is stepstone.lora_fusion's, which checks the loaded adapters again."""
    detail = _differing_sites(members)
    return None if detail is None else f"LoRA members of one Fuse must update the same modules ({detail})"


def _fused_at_same_sites(members: Sequence[Member], target: Member) -> str | None:
    """AdapterFusion mixes the members' outputs site by site: every member needs a bottleneck at the same
    places (the adapters library raises a ValueError otherwise)."""
    detail = _differing_sites(members)
    return None if detail is None else (f"Fuse members must have their bottlenecks at the same places, AdapterFusion "
                                        f"mixes their outputs place by place ({detail}); fuse adapters of one method")


FULL_REFUSED = "full fine-tune runs cannot be composed: Stack and Fuse take adapters"
AVERAGE_MIXED = ("Average members and the target must all be bottleneck or all LoRA adapters (bottleneck: "
                 "{bottleneck_all}; LoRA: {lora_all}): the adapters library's Average mixes one kind of layer state")
SEVERAL_LORA = ("a Stack with several LoRA adapters cannot also hold a bottleneck adapter: LoRA: {lora_all}; "
                "make every member LoRA, or keep one LoRA")

SCALING_AND_LORA = ("a Stack cannot hold (IA)^3 and LoRA adapters together: both live in the same linear layers, "
                    "where the adapters library chains a Stack's branches (a LoRA branch would act on the (IA)^3 "
                    "scaling vector, not on the layer's input); (IA)^3: {scaling_all}; LoRA: {lora_all}")

RULES: tuple[Rule, ...] = (
    Rule("full-member", None, {Family.FULL: SOME}, None, FULL_REFUSED, others=True),
    Rule("full-target", None, {}, frozenset({Family.FULL}), FULL_REFUSED, others=True),
    Rule("stack-sequential", Block.STACK, {Family.BOTTLENECK: SOME}, frozenset({Family.BOTTLENECK}),
         Semantics.SEQUENTIAL),
    Rule("stack-placed-lora-target", Block.STACK, {Family.BOTTLENECK: SOME}, frozenset({Family.LORA}),
         Semantics.PLACED),
    Rule("stack-placed-lora-member", Block.STACK, {Family.LORA: ONE, Family.BOTTLENECK: ANY_NUMBER},
         frozenset({Family.BOTTLENECK}), Semantics.PLACED),
    Rule("stack-sum", Block.STACK, {Family.LORA: SOME}, frozenset({Family.LORA}), Semantics.SUM, check=_same_sites),
    Rule("stack-loras-and-bottleneck", Block.STACK, {Family.LORA: SOME, Family.BOTTLENECK: SOME},
         frozenset({Family.LORA}), SEVERAL_LORA),
    Rule("stack-loras-bottleneck-target", Block.STACK, {Family.LORA: (2, None), Family.BOTTLENECK: ANY_NUMBER},
         frozenset({Family.BOTTLENECK}), SEVERAL_LORA),
    Rule("stack-scaled", Block.STACK, {Family.SCALING: SOME}, frozenset({Family.SCALING}), Semantics.SEQUENTIAL),
    Rule("stack-placed-scaling", Block.STACK, {Family.BOTTLENECK: ANY_NUMBER, Family.SCALING: ANY_NUMBER},
         frozenset({Family.BOTTLENECK, Family.SCALING}), Semantics.PLACED),
    Rule("stack-scaling-and-lora-members", Block.STACK, {Family.SCALING: SOME, Family.LORA: SOME}, None,
         SCALING_AND_LORA, others=True),
    Rule("stack-scaling-members-lora-target", Block.STACK, {Family.SCALING: SOME}, frozenset({Family.LORA}),
         SCALING_AND_LORA, others=True),
    Rule("stack-lora-members-scaling-target", Block.STACK, {Family.LORA: SOME}, frozenset({Family.SCALING}),
         SCALING_AND_LORA, others=True),
    Rule("fuse-bottleneck", Block.FUSE, {Family.BOTTLENECK: SOME}, ADAPTERS, Semantics.FUSION,
         check=_fused_at_same_sites),
    Rule("fuse-lora", Block.FUSE, {Family.LORA: SOME}, frozenset({Family.BOTTLENECK, Family.LORA}),
         Semantics.LORA_FUSION, check=_same_member_sites),
    Rule("fuse-lora-scaling-target", Block.FUSE, {Family.LORA: SOME}, frozenset({Family.SCALING}),
         "Fuse over LoRA members takes a bottleneck or LoRA target: the gates add the members' updates to a "
         "layer's output, which an (IA)^3 target rescales, so the members' updates would escape its scaling"),
    # the text (pinned by tests since before Fuse over LoRA members) holds for mixed members: AdapterFusion
    # needs every member bottleneck, and Fuse over LoRA members every member LoRA (the Stack hint is one way out)
    Rule("fuse-lora-and-bottleneck", Block.FUSE, {Family.LORA: SOME, Family.BOTTLENECK: SOME}, ADAPTERS,
         "Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); "
         "LoRA member(s): {lora_members}. Use Stack for LoRA adapters"),
    Rule("fuse-scaling-member", Block.FUSE, {Family.SCALING: SOME}, None,
         "Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); (IA)^3 member(s): "
         "{scaling_members} rescale projections and have no output to mix. Use Stack for (IA)^3 adapters",
         others=True),
    Rule("average-bottleneck", Block.AVERAGE, {Family.BOTTLENECK: SOME}, frozenset({Family.BOTTLENECK}),
         Semantics.AVERAGE),
    Rule("average-lora", Block.AVERAGE, {Family.LORA: SOME}, frozenset({Family.LORA}), Semantics.WEIGHTED_SUM,
         check=_same_sites_in("Average")),
    Rule("average-mixed", Block.AVERAGE, {}, None, AVERAGE_MIXED, others=True),
)


@dataclass(frozen=True)
class BlockRule:
    """What a block needs and builds (its fewest members are `Block.min_members`, which specs checks).
    setups: for each semantics the block supports, (composition, target) -> the adapters-library setup;
    describe: (composition, target) -> the human-readable setup. The training mode comes from the
    semantics (`training_mode`), not from the block."""

    setups: Mapping[Semantics, Callable[[Composition, str], Any]]
    describe: Callable[[Composition, str], str]
    title: str = field(default="")

    @property
    def mode(self) -> str:
        """The training mode of the first of its semantics that trains a layer of its own (LAYERS), else
        "adapter" (the target adapter + head)."""
        return next((LAYERS[s].mode for s in self.setups if s in LAYERS), "adapter")


def _stack(c: Composition, target: str) -> Any:
    from adapters.composition import Stack

    return Stack(*c.members, target)


def _sum(c: Composition, target: str) -> Any:
    from adapters.composition import Average

    n = len(c.members) + 1
    return Average(*c.members, target, weights=[float(n)] * n, normalize_weights=False)


def _fuse(c: Composition, target: str) -> Any:
    from adapters.composition import Fuse, Stack

    return Stack(Fuse(*c.members), target)


def _average(c: Composition, target: str) -> Any:
    from adapters.composition import Average, Stack

    n = len(c.members)  # adapters' Average takes the mean of w_i h_i: n w_i makes it sum_i w_i h_i
    return Stack(Average(*c.members, weights=[n * w for w in c.mix], normalize_weights=False), target)


def _weighted_sum(c: Composition, target: str) -> Any:
    from adapters.composition import Average

    n = len(c.members) + 1  # as _sum: the mean of n terms times n is their sum; the target at weight 1
    return Average(*c.members, target, weights=[n * w for w in (*c.mix, 1.0)], normalize_weights=False)


def _describe_average(c: Composition, target: str) -> str:
    items = c.members if c.weights is None else [f"{m}={w:.2f}" for m, w in zip(c.members, c.weights)]
    return f"Average({', '.join(items)}) + {target}"


def _target_alone(composition: Composition, target: str) -> Any:
    """Fuse over LoRA members: the adapters setup is the target alone (base(x)); the fusion's gates add the
    members' weighted updates on top (an active member would count twice: stepstone.lora_fusion refuses it)."""
    return target


BLOCKS: dict[Block, BlockRule] = {
    Block.STACK: BlockRule({Semantics.SEQUENTIAL: _stack, Semantics.PLACED: _stack, Semantics.SUM: _sum},
                           lambda c, target: f"Stack({', '.join((*c.members, target))})", "Stack"),
    Block.FUSE: BlockRule({Semantics.FUSION: _fuse, Semantics.LORA_FUSION: _target_alone},
                          lambda c, target: f"Fuse({', '.join(c.members)}) + {target}", "Fuse"),
    Block.AVERAGE: BlockRule({Semantics.AVERAGE: _average, Semantics.WEIGHTED_SUM: _weighted_sum},
                             _describe_average, "Average"),
}


# ------------------------------------------------------------------------------------------- trained layers
@dataclass(frozen=True)
class TrainedLayer:
    """A composition's own trained layer (AdapterFusion's attention, the LoRA-fusion gates): trained with the
    target, saved in the run folder, rebuilt when the run is loaded."""

    mode: str  # the training mode that trains it (training.MODES)
    folder: str  # the run sub-folder holding its files
    name: Callable[[tuple[str, ...]], str]  # its name from the members (trainable_names' layer)
    add: Callable[[Any, tuple[str, ...]], None]  # (model, members): add it, untrained
    save: Callable[[Any, Path, tuple[str, ...]], None]  # (model, directory, members)
    load: Callable[[Any, Path, tuple[str, ...]], None]  # (model, directory, members): add + load, strictly
    activate: Callable[[Any, tuple[str, ...]], None] | None = None  # after methods.activate(model, setup, head)


def _lora_fusion() -> Any:
    from . import lora_fusion  # imports torch: only when a LoRA fusion is built or loaded

    return lora_fusion


LAYERS: dict[Semantics, TrainedLayer] = {
    # folders: manifest.ArtifactLayout.FUSION and .LORA_FUSION (the layout imports this module, not back)
    Semantics.FUSION: TrainedLayer("fusion", "fusion", fusion_name, add_fusion, save_fusion, load_fusion),
    Semantics.LORA_FUSION: TrainedLayer(
        "lora-fusion", "lora_fusion", fusion_name,
        add=lambda *args: _lora_fusion().add_layer(*args), save=lambda *args: _lora_fusion().save_layer(*args),
        load=lambda *args: _lora_fusion().load_layer(*args),
        activate=lambda *args: _lora_fusion().activate_layer(*args)),
}


def trained_layer(semantics: Semantics | None) -> TrainedLayer | None:
    """The composition's own trained layer, None for a semantics without one (or no composition)."""
    return LAYERS.get(semantics) if semantics is not None else None


def training_mode(semantics: Semantics | None, method: str) -> str:
    """The mode name: the layer's when the semantics has one, else the method's own (Method.train_mode)."""
    layer = trained_layer(semantics)
    return layer.mode if layer is not None else METHODS.get(method).train_mode


def _names(members: Sequence[Member], target: Member) -> dict[str, str]:
    out = {}
    for family in Family:
        out[f"{family.value}_members"] = ", ".join(m.name for m in members if m.family is family)
        out[f"{family.value}_all"] = ", ".join(m.name for m in (*members, target) if m.family is family)
    return out


def rule_for(block: Block, members: Sequence[Member], target: Member) -> Rule:
    """The first row of `RULES` that matches the cell; raises if none does (a family no row covers)."""
    for rule in RULES:
        if rule.matches(block, members, target.family):
            return rule
    methods = ", ".join(m.method for m in members)
    raise StepstoneError(f"no composition rule covers {block.value.capitalize()} of {methods} under a "
                         f"{target.method} target")


def semantics(block: Block, members: Sequence[Member], target: Member) -> Semantics:
    """Which composition a (block, member methods, target method) cell means; raises if it is refused."""
    reason = refusal_of(block, members, target)
    if reason is not None:
        raise StepstoneError(reason)
    return rule_for(block, members, target).outcome


def refusal_of(block: Block, members: Sequence[Member], target: Member) -> str | None:
    """The reason a concrete cell (with names and settings) is refused, or None if it is supported."""
    rule = rule_for(block, members, target)
    if isinstance(rule.outcome, Semantics):
        return rule.check(members, target) if rule.check is not None else None
    return rule.outcome.format(**_names(members, target))


def refusal(block: Block, member_methods: Sequence[str], target_method: str) -> str | None:
    """The reason a cell given by method names only is refused (for the grid's expansion), or None.
    Conditions on settings (e.g. summed LoRAs updating the same modules) assume the defaults."""
    members = [Member(f"m{i + 1}", m, METHODS.get(m).default_settings()) for i, m in enumerate(member_methods)]
    return refusal_of(block, members, Member("target", target_method, METHODS.get(target_method).default_settings()))


def adapters_setup(composition: Composition | None, target: str, kind: Semantics | None) -> Any:
    """The adapters-library block that computes `kind` for these members and target."""
    if composition is None:
        return target
    setups = BLOCKS[composition.block].setups
    build = setups[kind] if kind is not None else next(iter(setups.values()))
    return build(composition, target)


def describe(composition: Composition | None, target: str) -> str:
    """Human-readable setup, e.g. 'Stack(a, b, target)' or 'Fuse(a, b) + target'."""
    if composition is None:
        return target
    return BLOCKS[composition.block].describe(composition, target)


def parse(text: str) -> Composition:
    """'Stack(a, b)', 'Fuse(a,b)' or 'Average(a=0.7, b=0.3)' (case-insensitive) -> Composition."""
    import re

    from .specs import WEIGHTS_RULE

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
    pairs = [tuple(p.strip() for p in m.split("=", 1)) if "=" in m else (m, None) for m in members]
    members = tuple(name for name, _ in pairs)
    weights = None
    unweighted = [name for name, weight in pairs if weight is None]
    if len(unweighted) < len(pairs):
        if unweighted:
            raise StepstoneError(f"bad composition '{text}': '{unweighted[0]}' has no weight; {WEIGHTS_RULE}")
        try:
            weights = tuple(float(weight) for _, weight in pairs)
        except ValueError:
            bad = next(p for p in pairs if not _is_float(p[1]))
            raise StepstoneError(f"bad composition '{text}': weight '{bad[1]}' of '{bad[0]}' is not a number; "
                                 f"{WEIGHTS_RULE}") from None
    try:
        return Composition(blocks[match.group(1).lower()], members, weights)
    except ValueError as err:
        raise StepstoneError(f"bad composition '{text}': {err}") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count_text(family: Family, count: Count) -> str:
    label, (lo, hi) = family.label, count
    if (lo, hi) == SOME:
        return label
    if (lo, hi) == ONE:
        return f"one {label}"
    if (lo, hi) == ANY_NUMBER:
        return f"any {label}s"
    return f"{lo}+ {label}" if hi is None else f"{lo}-{hi} {label}"


def _members_text(rule: Rule) -> str:
    parts = [_count_text(f, c) for f, c in rule.members.items()]
    if rule.others:
        return " + ".join(parts) + " among them" if parts else "any"
    return " + ".join(parts)


def _outcome_text(rule: Rule) -> str:
    if isinstance(rule.outcome, Semantics):
        return f"**{rule.outcome.value}**: {MEANING[rule.outcome]}"
    reason = rule.outcome
    for family in Family:  # name placeholders read as what they stand for
        reason = reason.replace(f"{{{family.value}_members}}", f"*names of the {family.label} members*")
        reason = reason.replace(f"{{{family.value}_all}}", f"*names of the {family.label} adapters*")
    return f"refused: {reason}"


def markdown_table() -> str:
    """The capability table as the README shows it (one line per rule, first match wins)."""
    lines = ["| block | members | target | meaning |", "|---|---|---|---|"]
    for rule in RULES:
        block = "any" if rule.block is None else BLOCKS[rule.block].title
        target = "any" if rule.target is None else " or ".join(f.label for f in Family if f in rule.target)
        lines.append(f"| {block} | {_members_text(rule)} | {target} | {_outcome_text(rule)} |")
    return "\n".join(lines) + "\n"
