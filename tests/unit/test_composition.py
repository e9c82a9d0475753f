"""Composition rules (stepstone.composition): the semantics table, the parser, and a numeric pin for every
supported cell, computed on the tiny backbone with adapters added directly through stepstone.methods.

Adapter weights are overwritten with non-zero random values under a fixed seed (LoRA B starts at zero and
a fresh bottleneck is close to the identity), so every adapter visibly changes the output.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from stepstone import composition as comp
from stepstone import methods
from stepstone.backbone import load_backbone
from stepstone.composition import Member, Semantics
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.methods import BottleneckSpec, HoulsbySpec, IA3Spec, LoRASpec, LoRATarget
from stepstone.specs import BackboneSpec, Block, Composition, MethodSpec
from stepstone.tasks import get_task
from stepstone.toy import generate

torch.set_num_threads(1)

QV = (LoRATarget.Q, LoRATarget.V)
BN = MethodSpec(kind="bottleneck", bottleneck=BottleneckSpec(reduction_factor=16))
# Two LoRAs on the same modules with different ranks and scalings (alpha / r): 1.0 and 2.0.
LORA_A = MethodSpec(kind="lora", lora=LoRASpec(r=4, alpha=4, target_modules=QV))
LORA_T = MethodSpec(kind="lora", lora=LoRASpec(r=8, alpha=16, target_modules=QV))
SCALING = {"lora_a": 1.0, "lora_b": 1.0, "lora_t": 2.0}
HEAD = "head"
LAYERS = (0, 1)


# ------------------------------------------------------------------------------------------- semantics table
def bn(name: str) -> Member:
    return Member(name, "bottleneck")


def lora(name: str, *targets: LoRATarget) -> Member:
    return Member(name, "lora", LoRASpec(target_modules=targets or QV))


def full(name: str) -> Member:
    return Member(name, "full")


def hb(name: str) -> Member:
    return Member(name, "houlsby", HoulsbySpec())


def ia3(name: str, *targets: LoRATarget) -> Member:
    return Member(name, "ia3", IA3Spec(target_modules=targets) if targets else IA3Spec())


SEMANTICS_TABLE = [
    (Block.STACK, [bn("a")], bn("t"), Semantics.SEQUENTIAL),
    (Block.STACK, [bn("a"), bn("b")], bn("t"), Semantics.SEQUENTIAL),
    (Block.STACK, [bn("a")], lora("t"), Semantics.PLACED),
    (Block.STACK, [bn("a"), bn("b")], lora("t"), Semantics.PLACED),
    (Block.STACK, [lora("a")], bn("t"), Semantics.PLACED),
    (Block.STACK, [lora("a"), bn("b")], bn("t"), Semantics.PLACED),
    (Block.STACK, [lora("a")], lora("t"), Semantics.SUM),
    (Block.STACK, [lora("a"), lora("b")], lora("t"), Semantics.SUM),
    # the same modules listed in another order are the same modules
    (Block.STACK, [lora("a", LoRATarget.V, LoRATarget.Q)], lora("t", LoRATarget.Q, LoRATarget.V), Semantics.SUM),
    (Block.FUSE, [bn("a"), bn("b")], bn("t"), Semantics.FUSION),
    (Block.FUSE, [bn("a"), bn("b")], lora("t"), Semantics.FUSION),
    (Block.FUSE, [bn("a"), bn("b"), bn("c")], bn("t"), Semantics.FUSION),
    (Block.AVERAGE, [bn("a"), bn("b")], bn("t"), Semantics.AVERAGE),
    (Block.AVERAGE, [lora("a"), lora("b")], lora("t"), Semantics.WEIGHTED_SUM),
    (Block.FUSE, [lora("a"), lora("b")], lora("t"), Semantics.LORA_FUSION),
    (Block.FUSE, [lora("a"), lora("b")], bn("t"), Semantics.LORA_FUSION),
    # the members must update the same modules, the target may update others (it is part of base(x))
    (Block.FUSE, [lora("a"), lora("b")], lora("t", LoRATarget.INTERMEDIATE), Semantics.LORA_FUSION),
    # ---- new methods (issue 14): houlsby is a bottleneck (two sites), ia3 the SCALING family
    (Block.STACK, [hb("a")], bn("t"), Semantics.SEQUENTIAL),
    (Block.STACK, [bn("a")], hb("t"), Semantics.SEQUENTIAL),
    (Block.STACK, [hb("a")], lora("t"), Semantics.PLACED),
    (Block.STACK, [lora("a")], hb("t"), Semantics.PLACED),
    (Block.STACK, [ia3("a")], ia3("t"), Semantics.SEQUENTIAL),
    (Block.STACK, [ia3("a"), ia3("b", LoRATarget.Q)], ia3("t"), Semantics.SEQUENTIAL),
    (Block.STACK, [ia3("a")], bn("t"), Semantics.PLACED),
    (Block.STACK, [bn("a")], ia3("t"), Semantics.PLACED),
    (Block.STACK, [ia3("a"), hb("b")], ia3("t"), Semantics.PLACED),
    (Block.STACK, [hb("a"), ia3("b")], bn("t"), Semantics.PLACED),
    (Block.FUSE, [hb("a"), hb("b")], hb("t"), Semantics.FUSION),
    (Block.FUSE, [hb("a"), hb("b")], lora("t"), Semantics.FUSION),
    (Block.FUSE, [bn("a"), bn("b")], ia3("t"), Semantics.FUSION),
    (Block.FUSE, [hb("a"), hb("b")], ia3("t"), Semantics.FUSION),
]


def cell_id(block: Block, members: list[Member], target: Member) -> str:
    def short(m: Member) -> str:
        kind = {"bottleneck": "bn", "lora": "lora", "full": "full", "houlsby": "hb", "ia3": "ia3"}[m.method]
        targets = getattr(m.settings, "target_modules", None)
        return kind + ("(" + ",".join(t.value for t in targets) + ")" if targets else "")

    return f"{block.value}:{'+'.join(short(m) for m in members)}->{short(target)}"


@pytest.mark.parametrize("block, members, target, expected",
                         [pytest.param(*row, id=cell_id(*row[:3])) for row in SEMANTICS_TABLE])
def test_semantics_cells(block, members, target, expected):
    assert comp.semantics(block, members, target) is expected


def test_sum_refuses_different_target_modules_naming_both():
    members = [lora("lora_a", LoRATarget.Q, LoRATarget.V)]
    target = lora("lora_t", LoRATarget.INTERMEDIATE)
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.STACK, members, target)
    message = str(err.value)
    assert "must update the same modules" in message
    assert "lora_a: q, v" in message and "lora_t: intermediate" in message


@pytest.mark.parametrize("members, target", [
    ([lora("la"), bn("b")], lora("lt")),
    ([lora("la"), lora("lb")], bn("t")),
    ([bn("b"), lora("la"), lora("lb")], lora("lt")),
], ids=["lora+bn+lora", "lora+lora+bn", "bn+lora+lora+lora"])
def test_several_loras_with_a_bottleneck_refused(members, target):
    with pytest.raises(StepstoneError, match="cannot also hold a bottleneck") as err:
        comp.semantics(Block.STACK, members, target)
    loras = [m.name for m in (*members, target) if m.method == "lora"]
    assert f"LoRA: {', '.join(loras)}" in str(err.value)


@pytest.mark.parametrize("target", [bn("t"), lora("t")], ids=["bn-target", "lora-target"])
def test_fuse_with_a_lora_member_refused(target):
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.FUSE, [bn("a"), lora("la")], target)
    message = str(err.value)
    assert "bottleneck" in message and "la" in message and "Use Stack" in message


@pytest.mark.parametrize("block", list(Block), ids=lambda b: b.value)
@pytest.mark.parametrize("members, target", [
    ([full("f")], bn("t")),
    ([bn("a"), full("f")], lora("t")),
    ([bn("a"), bn("b")], full("t")),
], ids=["full-member", "full-among-members", "full-target"])
def test_full_fine_tune_refused(block, members, target):
    with pytest.raises(StepstoneError, match="full fine-tune runs cannot be composed"):
        comp.semantics(block, members, target)


# ------------------------------------------------------------------------------------------------ parse
@pytest.mark.parametrize("text, block, members", [
    ("Stack(a, b)", Block.STACK, ("a", "b")),
    ("fuse(a,b)", Block.FUSE, ("a", "b")),
    ("  FUSE ( x-1 , y_2 , z )  ", Block.FUSE, ("x-1", "y_2", "z")),
    ("stack(single)", Block.STACK, ("single",)),
])
def test_parse(text, block, members):
    parsed = comp.parse(text)
    assert parsed == Composition(block, members)
    assert comp.parse(str(parsed)) == parsed  # str() writes what parse() reads


@pytest.mark.parametrize("text, why", [
    ("Stack a, b", "expected Stack(NAME, ...)"),
    ("Mix(a, b)", "expected Stack(NAME, ...)"),
    ("Stack(a, (b))", "expected Stack(NAME, ...)"),
    ("Stack(a, b) extra", "expected Stack(NAME, ...)"),
    ("", "expected Stack(NAME, ...)"),
    ("Stack()", "at least one member"),
    ("Fuse(a)", "Fuse needs at least two members"),
    ("Stack(a, b, a)", "members must be distinct"),
    ("Fuse(a, a)", "members must be distinct"),
    ("Stack(a, ../x)", "invalid composition member '../x'"),
    ("Stack(a b)", "invalid composition member 'a b'"),
])
def test_parse_refuses(text, why):
    with pytest.raises(StepstoneError) as err:
        comp.parse(text)
    assert str(err.value).startswith(f"bad composition '{text}': ")
    assert why in str(err.value)


def test_adapters_setup_and_describe():
    from adapters.composition import Average, Fuse, Stack

    stack, fuse = Composition(Block.STACK, ("a", "b")), Composition(Block.FUSE, ("a", "b"))
    assert comp.adapters_setup(None, "t", None) == "t"
    for kind in (Semantics.SEQUENTIAL, Semantics.PLACED):
        setup = comp.adapters_setup(stack, "t", kind)
        assert isinstance(setup, Stack) and setup.children == ["a", "b", "t"]
    summed = comp.adapters_setup(stack, "t", Semantics.SUM)
    assert isinstance(summed, Average) and summed.children == ["a", "b", "t"] and summed.weights == [3.0] * 3
    fused = comp.adapters_setup(fuse, "t", Semantics.FUSION)
    assert isinstance(fused, Stack) and isinstance(fused.children[0], Fuse)
    assert fused.children[0].children == ["a", "b"] and fused.children[1] == "t"
    assert comp.describe(stack, "t") == "Stack(a, b, t)"
    assert comp.describe(fuse, "t") == "Fuse(a, b) + t"
    assert comp.describe(None, "t") == "t"


# ------------------------------------------------------------------------------------------- numeric pins
def _build():
    """Tiny backbone + bn_a, bn_b, bn_t (bottleneck), lora_a, lora_t (LoRA on q, v), Fuse(bn_a, bn_b) and a
    classification head, every adapter / fusion / head weight random (seeded)."""
    backbone = load_backbone(BackboneSpec())
    model = backbone.model
    for name in ("bn_a", "bn_b", "bn_t"):
        methods.add_adapter(model, name, BN)
    methods.add_adapter(model, "lora_a", LORA_A)
    methods.add_adapter(model, "lora_t", LORA_T)
    methods.add_fusion(model, ("bn_a", "bn_b"))
    task = get_task("toy-sentiment")
    handler = handler_for(task)
    handler.add_head(model, HEAD, task)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if methods.adapter_kind_of_parameter(name) is not None:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    model.eval()
    rows = handler.encode(generate("toy-sentiment", "validation", "en", n=6), backbone.tokenizer, task, 128, 64,
                          train=False)
    batch = handler.collate(rows, backbone.tokenizer)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    assert inputs["attention_mask"].min() == 0  # padded: masks matter
    return model, inputs


@pytest.fixture
def tiny():
    return _build()


def logits(model, inputs, setup) -> torch.Tensor:
    methods.activate(model, setup, HEAD)
    with torch.no_grad():
        return model(**inputs).logits


def setup_for(block: Block, members: tuple[str, ...], target: str, member_methods: dict[str, MethodSpec],
              target_method: MethodSpec):
    """The adapters block stepstone activates for this cell (semantics computed, as the pipeline does)."""
    def member(name, method):
        return Member(name, method.kind, method.options)

    kind = comp.semantics(block, [member(m, member_methods[m]) for m in members], member(target, target_method))
    return comp.adapters_setup(Composition(block, members), target, kind), kind


def lora_linears(model):
    """(layer, 'query' | 'value', module) for every LoRA-wrapped linear of the tiny encoder."""
    for i, layer in enumerate(model.base_model.encoder.layer):
        for which in ("query", "value"):
            yield i, which, getattr(layer.attention.self, which)


def delta(module, name: str) -> torch.Tensor:
    lo = module.loras[name]
    assert lo.scaling == SCALING[name]
    return SCALING[name] * (lo.lora_B @ lo.lora_A)


@contextmanager
def merged(model, *names: str):
    """Temporarily add the LoRA updates of `names` into the plain weights (a reference with no LoRA active)."""
    saved = {}
    with torch.no_grad():
        for i, which, module in lora_linears(model):
            saved[i, which] = module.weight.detach().clone()
            module.weight.add_(sum(delta(module, n) for n in names))
    try:
        yield
    finally:
        with torch.no_grad():
            for i, which, module in lora_linears(model):
                module.weight.copy_(saved[i, which])


def zero_(model, contains: str) -> None:
    with torch.no_grad():
        hit = [p.zero_() for n, p in model.named_parameters() if contains in n]
    assert hit


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_adapters_change_the_output(tiny):
    model, inputs = tiny
    plain = logits(model, inputs, None)
    for single in ("bn_a", "bn_t", "lora_a", "lora_t"):
        assert max_diff(logits(model, inputs, single), plain) > 1e-2, single


# SUM ------------------------------------------------------------------------------------------------------
def test_sum_equals_merged_weight_sum(tiny):
    """Stack(lora_a, lora_t) as stepstone runs it == no adapter, W + s_a B_a A_a + s_t B_t A_t in q and v."""
    model, inputs = tiny
    setup, kind = setup_for(Block.STACK, ("lora_a",), "lora_t", {"lora_a": LORA_A}, LORA_T)
    assert kind is Semantics.SUM
    got = logits(model, inputs, setup)
    with merged(model, "lora_a", "lora_t"):
        reference = logits(model, inputs, None)
    assert torch.allclose(got, reference, atol=1e-5, rtol=0)
    # and it is neither member alone
    with merged(model, "lora_t"):
        assert max_diff(got, logits(model, inputs, None)) > 1e-3
    with merged(model, "lora_a"):
        assert max_diff(got, logits(model, inputs, None)) > 1e-3


def test_sum_is_not_the_adapters_library_stack(tiny):
    """adapters' own Stack(lora_a, lora_t) chains the branches: dW_t (dW_a x), dropping dW_a x. That is why
    stepstone builds SUM from an un-normalised Average instead."""
    from adapters.composition import Stack

    model, inputs = tiny
    setup, _ = setup_for(Block.STACK, ("lora_a",), "lora_t", {"lora_a": LORA_A}, LORA_T)
    assert max_diff(logits(model, inputs, Stack("lora_a", "lora_t")), logits(model, inputs, setup)) > 1e-3

    # layer level: the exact formulas of both, on one LoRA-wrapped projection
    module = model.base_model.encoder.layer[0].attention.self.query
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(1))
    a, t = module.loras["lora_a"], module.loras["lora_t"]
    base = x @ module.weight.T + module.bias
    with torch.no_grad():
        methods.activate(model, setup, HEAD)
        summed = module(x)
        methods.activate(model, Stack("lora_a", "lora_t"), HEAD)
        chained = module(x)
        expect_sum = base + 1.0 * (x @ a.lora_A.T @ a.lora_B.T) + 2.0 * (x @ t.lora_A.T @ t.lora_B.T)
        expect_chain = base + 2.0 * ((1.0 * (x @ a.lora_A.T @ a.lora_B.T)) @ t.lora_A.T @ t.lora_B.T)
    assert torch.allclose(summed, expect_sum, atol=1e-5, rtol=0)
    assert torch.allclose(chained, expect_chain, atol=1e-5, rtol=0)
    assert max_diff(summed, chained) > 1e-2


# SEQUENTIAL -----------------------------------------------------------------------------------------------
def test_sequential_is_order_sensitive(tiny):
    model, inputs = tiny
    forward, kind = setup_for(Block.STACK, ("bn_a",), "bn_t", {"bn_a": BN}, BN)
    backward, _ = setup_for(Block.STACK, ("bn_t",), "bn_a", {"bn_t": BN}, BN)
    assert kind is Semantics.SEQUENTIAL
    ab, ba = logits(model, inputs, forward), logits(model, inputs, backward)
    assert max_diff(ab, ba) > 1e-3
    assert max_diff(ab, logits(model, inputs, "bn_t")) > 1e-3


def test_sequential_layer_formula(tiny):
    """In each layer's FFN output: h = dense(x); f_k(z) = z + up_k(relu(down_k(LN(z + r)))); the output is
    LN(f_t(f_a(h)) + r), r the attention output (Pfeiffer placement, adapters' Stack)."""
    model, _ = tiny
    setup, _ = setup_for(Block.STACK, ("bn_a",), "bn_t", {"bn_a": BN}, BN)
    methods.activate(model, setup, HEAD)
    generator = torch.Generator().manual_seed(2)
    for i in LAYERS:
        out = model.base_model.encoder.layer[i].output
        x, r = torch.randn(2, 5, 256, generator=generator), torch.randn(2, 5, 128, generator=generator)

        def f(name, z):
            adapter = out.adapters[name]
            down = torch.relu(adapter.adapter_down[0](out.LayerNorm(z + r)))
            return z + adapter.adapter_up(down)

        with torch.no_grad():
            expected = out.LayerNorm(f("bn_t", f("bn_a", out.dense(x))) + r)
            assert torch.allclose(out(x, r), expected, atol=1e-5, rtol=0)


def test_sequential_with_identity_member_is_the_target_alone(tiny):
    model, inputs = tiny
    setup, _ = setup_for(Block.STACK, ("bn_a",), "bn_t", {"bn_a": BN}, BN)
    zero_(model, "adapters.bn_a.adapter_up.")
    assert torch.allclose(logits(model, inputs, setup), logits(model, inputs, "bn_t"), atol=1e-6, rtol=0)


# PLACED ---------------------------------------------------------------------------------------------------
def test_placed_bottleneck_member_lora_target(tiny):
    """Stack(bn_a, lora_t): the bottleneck after the FFN and the LoRA update in q, v never meet; the result is
    both applied independently, in either order."""
    model, inputs = tiny
    setup, kind = setup_for(Block.STACK, ("bn_a",), "lora_t", {"bn_a": BN}, LORA_T)
    assert kind is Semantics.PLACED
    got = logits(model, inputs, setup)
    assert torch.equal(got, logits(model, inputs, setup_for(Block.STACK, ("lora_t",), "bn_a",
                                                            {"lora_t": LORA_T}, BN)[0]))
    with merged(model, "lora_t"):
        reference = logits(model, inputs, "bn_a")
    assert torch.allclose(got, reference, atol=1e-5, rtol=0)
    assert max_diff(got, logits(model, inputs, "bn_a")) > 1e-3
    assert max_diff(got, logits(model, inputs, "lora_t")) > 1e-3
    zero_(model, "loras.lora_t.lora_B")
    assert torch.allclose(logits(model, inputs, setup), logits(model, inputs, "bn_a"), atol=1e-6, rtol=0)


def test_placed_lora_member_bottleneck_target(tiny):
    model, inputs = tiny
    setup, kind = setup_for(Block.STACK, ("lora_a",), "bn_t", {"lora_a": LORA_A}, BN)
    assert kind is Semantics.PLACED
    got = logits(model, inputs, setup)
    with merged(model, "lora_a"):
        reference = logits(model, inputs, "bn_t")
    assert torch.allclose(got, reference, atol=1e-5, rtol=0)
    zero_(model, "loras.lora_a.lora_B")
    assert torch.allclose(logits(model, inputs, setup), logits(model, inputs, "bn_t"), atol=1e-6, rtol=0)


# FUSION ---------------------------------------------------------------------------------------------------
def test_fusion_parameters(tiny):
    model, _ = tiny
    names = {n: p.numel() for n, p in model.named_parameters() if "adapter_fusion_layer" in n}
    expected = {f"roberta.encoder.layer.{i}.output.adapter_fusion_layer.bn_a,bn_b.{p}"
                for i in LAYERS for p in ("query.weight", "query.bias", "key.weight", "key.bias", "value.weight")}
    assert set(names) == expected
    assert {methods.adapter_kind_of_parameter(n) for n in names} == {("adapter_fusion_layer", "bn_a,bn_b")}
    assert methods.fusion_name(("bn_a", "bn_b")) == "bn_a,bn_b"
    assert sum(names.values()) == 2 * (3 * 128 * 128 + 2 * 128) == 98816


def test_fusion_bottleneck_target(tiny):
    model, inputs = tiny
    setup, kind = setup_for(Block.FUSE, ("bn_a", "bn_b"), "bn_t", {"bn_a": BN, "bn_b": BN}, BN)
    assert kind is Semantics.FUSION
    got = logits(model, inputs, setup)
    assert got.shape == (6, 2) and torch.isfinite(got).all()
    for other in ("bn_t", comp.adapters_setup(Composition(Block.STACK, ("bn_a",)), "bn_t", Semantics.SEQUENTIAL),
                  comp.adapters_setup(Composition(Block.STACK, ("bn_b",)), "bn_t", Semantics.SEQUENTIAL)):
        assert max_diff(got, logits(model, inputs, other)) > 1e-4, other
    # the fusion layer is really in the path: changing its weights changes the output
    zero_(model, "adapter_fusion_layer.bn_a,bn_b.value.weight")
    assert max_diff(got, logits(model, inputs, setup)) > 1e-4


def test_fusion_lora_target(tiny):
    """Stack(Fuse(bn_a, bn_b), lora_t): the LoRA update sits in q, v; with it zeroed only the fusion is left."""
    from adapters.composition import Fuse

    model, inputs = tiny
    setup, kind = setup_for(Block.FUSE, ("bn_a", "bn_b"), "lora_t", {"bn_a": BN, "bn_b": BN}, LORA_T)
    assert kind is Semantics.FUSION
    got = logits(model, inputs, setup)
    fuse_only = logits(model, inputs, Fuse("bn_a", "bn_b"))
    assert max_diff(got, fuse_only) > 1e-3
    with merged(model, "lora_t"):
        assert torch.allclose(got, logits(model, inputs, Fuse("bn_a", "bn_b")), atol=1e-5, rtol=0)
    zero_(model, "loras.lora_t.lora_B")
    assert torch.allclose(logits(model, inputs, setup), fuse_only, atol=1e-6, rtol=0)


# LORA_FUSION ----------------------------------------------------------------------------------------------
LORA_B = MethodSpec(kind="lora", lora=LoRASpec(r=2, alpha=8, target_modules=QV))


def lora_fusion_of(model, target: str, target_method: MethodSpec):
    """Fuse(lora_a, lora_b) + target as train_run builds it: the table's semantics, its adapters setup and its
    trained layer (composition.LAYERS) added over a second, random LoRA member lora_b."""
    methods.add_adapter(model, "lora_b", LORA_B)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".loras.lora_b." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    members = ("lora_a", "lora_b")
    setup, kind = setup_for(Block.FUSE, members, target, {"lora_a": LORA_A, "lora_b": LORA_B}, target_method)
    layer = comp.trained_layer(kind)
    layer.add(model, members)
    return setup, kind, layer, members


def fused_logits(model, inputs, setup, layer, members, weights) -> torch.Tensor:
    from stepstone import lora_fusion

    methods.activate(model, setup, HEAD)
    layer.activate(model, members)
    try:
        with torch.no_grad(), lora_fusion.fixed_gate(model, layer.name(members), weights):
            return model(**inputs).logits
    finally:
        lora_fusion.activate_lora_fusion(model, None)


def _one_hot_is_stack(tiny, target, target_method, stacked):
    model, inputs = tiny
    setup, kind, layer, members = lora_fusion_of(model, target, target_method)
    assert kind is Semantics.LORA_FUSION and setup == target and layer.mode == "lora-fusion"
    for k, member in enumerate(members):
        one_hot = [1.0 if i == k else 0.0 for i in range(len(members))]
        got = fused_logits(model, inputs, setup, layer, members, one_hot)
        method = {"lora_a": LORA_A, "lora_b": LORA_B}[member]
        stack, semantics = setup_for(Block.STACK, (member,), target, {member: method}, target_method)
        assert semantics is stacked
        assert torch.allclose(got, logits(model, inputs, stack), atol=1e-5, rtol=0), member
        assert max_diff(got, logits(model, inputs, target)) > 1e-3  # the member's update is really added
    half = fused_logits(model, inputs, setup, layer, members, [0.5, 0.5])
    assert max_diff(half, fused_logits(model, inputs, setup, layer, members, [1.0, 0.0])) > 1e-4


def test_lora_fusion_one_hot_is_stack_lora_target(tiny):
    """Fuse(lora_a, lora_b) + lora_t, gate fixed one-hot on member k == Stack(k, lora_t) (sum)."""
    _one_hot_is_stack(tiny, "lora_t", LORA_T, Semantics.SUM)


def test_lora_fusion_one_hot_is_stack_bottleneck_target(tiny):
    """Fuse(lora_a, lora_b) + bn_t, gate fixed one-hot on member k == Stack(k, bn_t) (placed)."""
    _one_hot_is_stack(tiny, "bn_t", BN, Semantics.PLACED)


def test_fuse_of_loras_on_different_modules_is_refused_naming_them():
    members = [lora("la", LoRATarget.Q, LoRATarget.V), lora("lb", LoRATarget.INTERMEDIATE)]
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.FUSE, members, lora("t"))
    assert str(err.value) == "LoRA members of one Fuse must update the same modules (la: q, v; lb: intermediate)"


def test_trained_layers_and_training_modes():
    assert comp.training_mode(None, "bottleneck") == "adapter" and comp.training_mode(None, "full") == "full"
    assert comp.training_mode(Semantics.SUM, "lora") == "adapter"
    assert comp.training_mode(Semantics.FUSION, "lora") == "fusion"
    assert comp.training_mode(Semantics.LORA_FUSION, "bottleneck") == "lora-fusion"
    assert comp.trained_layer(None) is None and comp.trained_layer(Semantics.PLACED) is None
    assert {s.value: (t.mode, t.folder, t.name(("a", "b")), t.activate is not None)
            for s, t in comp.LAYERS.items()} == {"fusion": ("fusion", "fusion", "a,b", False),
                                                "lora-fusion": ("lora-fusion", "lora_fusion", "a,b", True)}
    assert comp.adapters_setup(Composition(Block.FUSE, ("a", "b")), "t", Semantics.LORA_FUSION) == "t"


@pytest.mark.parametrize("text", ["Stack(a,,b)", "Fuse(a, b,)"])
def test_parse_refuses_empty_member_names(text):
    with pytest.raises(StepstoneError, match="empty member name"):
        comp.parse(text)


# ---- new methods (issue 14): houlsby (BOTTLENECK family, two sites) and ia3 (SCALING family) -------------
HB = MethodSpec(kind="houlsby")
IA3_KVI = MethodSpec(kind="ia3")  # k, v, intermediate (the defaults)
IA3_QV = MethodSpec(kind="ia3", ia3=IA3Spec(target_modules=(LoRATarget.Q, LoRATarget.V)))
NEW = {"hb_a": HB, "hb_b": HB, "hb_t": HB, "ia3_a": IA3_KVI, "ia3_t": IA3_KVI, "ia3_q": IA3_QV}
METHOD_OF = {"bn_a": BN, "bn_b": BN, "bn_t": BN, "lora_a": LORA_A, "lora_t": LORA_T, **NEW}
PROJECTIONS = ("attention.self.query", "attention.self.key", "attention.self.value", "intermediate.dense",
               "output.dense")


def with_new_methods(model):
    """Add the houlsby adapters hb_a, hb_b, hb_t, the (IA)^3 adapters ia3_a, ia3_t (k, v, intermediate) and
    ia3_q (q, v), and Fuse(hb_a, hb_b); their weights random (seeded), the (IA)^3 vectors around 1."""
    for name, spec in NEW.items():
        methods.add_adapter(model, name, spec)
    methods.add_fusion(model, ("hb_a", "hb_b"))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            owner = methods.adapter_kind_of_parameter(name)
            if owner is not None and (owner[1] in NEW or owner[1] == "hb_a,hb_b"):
                noise = torch.randn(param.shape, generator=generator) * 0.1
                param.copy_(noise + 1.0 if owner[1].startswith("ia3") else noise)
    model.eval()  # the new modules were built in training mode
    return model


def cell(members: tuple[str, ...], target: str, block: Block = Block.STACK):
    return setup_for(block, members, target, METHOD_OF, METHOD_OF[target])


@contextmanager
def folded(model, *names: str):
    """Temporarily fold the (IA)^3 vectors and LoRA updates of `names` into the plain weights: (IA)^3
    rescales a projection's output, (W x + b) * l = (diag(l) W) x + l * b; LoRA adds s B A to W."""
    saved = {}
    with torch.no_grad():
        for i, layer in enumerate(model.base_model.encoder.layer):
            for path in PROJECTIONS:
                module = layer.get_submodule(path)
                saved[i, path] = (module.weight.detach().clone(), module.bias.detach().clone())
                for name in (n for n in names if n in module.loras):
                    lo = module.loras[name]
                    if lo.composition_mode == "scale":
                        assert lo.scaling == 1
                        vector = lo.lora_B.view(-1)
                        module.weight.mul_(vector[:, None])
                        module.bias.mul_(vector)
                    else:
                        module.weight.add_(delta(module, name))
    try:
        yield
    finally:
        with torch.no_grad():
            for i, layer in enumerate(model.base_model.encoder.layer):
                for path in PROJECTIONS:
                    weight, bias = saved[i, path]
                    layer.get_submodule(path).weight.copy_(weight)
                    layer.get_submodule(path).bias.copy_(bias)


def test_new_adapters_change_the_output(tiny):
    model, inputs = tiny
    with_new_methods(model)
    plain = logits(model, inputs, None)
    for single in ("hb_a", "hb_t", "ia3_a", "ia3_t", "ia3_q"):
        assert max_diff(logits(model, inputs, single), plain) > 1e-2, single


def test_houlsby_sequential_layer_formula(tiny):
    """Houlsby bottlenecks act on a sublayer's output before the residual + LayerNorm: f_h(z) = z +
    up(swish(down(z))) after attention and after the FFN; the Pfeiffer bottleneck f_b(z) = z +
    up(relu(down(LN(z + r)))) after the FFN only. At each site the stack's adapters that sit there apply in
    order, then LN(. + r): after attention only houlsby's."""
    import torch.nn.functional as F

    model, inputs = tiny
    with_new_methods(model)

    def f(module, name, z, r):
        adapter = module.adapters[name]
        if METHOD_OF[name] is HB:
            return z + adapter.adapter_up(F.silu(adapter.adapter_down[0](z)))
        return z + adapter.adapter_up(torch.relu(adapter.adapter_down[0](module.LayerNorm(z + r))))

    generator = torch.Generator().manual_seed(4)
    for members, target in ((("hb_a",), "bn_t"), (("bn_a",), "hb_t"), (("hb_a", "bn_a"), "hb_t")):
        setup, kind = cell(members, target)
        assert kind is Semantics.SEQUENTIAL
        methods.activate(model, setup, HEAD)
        for i in LAYERS:
            layer = model.base_model.encoder.layer[i]
            for module, width in ((layer.attention.output, 128), (layer.output, 256)):
                x, r = torch.randn(2, 5, width, generator=generator), torch.randn(2, 5, 128, generator=generator)
                present = [n for n in (*members, target) if n in module.adapters]
                assert present == [n for n in (*members, target) if METHOD_OF[n] is HB or module is layer.output]
                with torch.no_grad():
                    z = module.dense(x)
                    for name in present:
                        z = f(module, name, z, r)
                    assert torch.allclose(module(x, r), module.LayerNorm(z + r), atol=1e-5, rtol=0)
    # model level: with hb_a the identity (its up-projections zero at both sites) only the target is left
    setup, _ = cell(("hb_a",), "bn_t")
    got = logits(model, inputs, setup)
    assert max_diff(got, logits(model, inputs, "bn_t")) > 1e-3
    zero_(model, "adapters.hb_a.adapter_up.")
    assert torch.allclose(logits(model, inputs, setup), logits(model, inputs, "bn_t"), atol=1e-6, rtol=0)


PLACED_CASES = {  # (members, target) -> (adapters folded into the weights, bottleneck setup of the reference)
    "hb->lora": ((("hb_a",), "lora_t"), (("lora_t",), ("hb_a",))),
    "lora->hb": ((("lora_a",), "hb_t"), (("lora_a",), ("hb_t",))),
    "ia3->bn": ((("ia3_a",), "bn_t"), (("ia3_a",), ("bn_t",))),
    "bn->ia3": ((("bn_a",), "ia3_t"), (("ia3_t",), ("bn_a",))),
    "ia3+hb->ia3": ((("ia3_a", "hb_a"), "ia3_t"), (("ia3_a", "ia3_t"), ("hb_a",))),
    "hb+ia3->bn": ((("hb_a", "ia3_a"), "bn_t"), (("ia3_a",), ("hb_a", "bn_t"))),
}


@pytest.mark.parametrize("case", list(PLACED_CASES))
def test_placed_cells_equal_the_folded_weights(tiny, case):
    """PLACED: the bottlenecks (in their stack order) and the LoRA update / (IA)^3 scalings never meet, so the
    stack equals the bottlenecks alone on weights with the LoRA update / the vectors folded in."""
    from adapters.composition import Stack

    model, inputs = tiny
    with_new_methods(model)
    (members, target), (fold, bottlenecks) = PLACED_CASES[case]
    setup, kind = cell(members, target)
    assert kind is Semantics.PLACED
    got = logits(model, inputs, setup)
    reference_setup = bottlenecks[0] if len(bottlenecks) == 1 else Stack(*bottlenecks)
    with folded(model, *fold):
        reference = logits(model, inputs, reference_setup)
    assert torch.allclose(got, reference, atol=1e-5, rtol=0)
    assert max_diff(got, logits(model, inputs, reference_setup)) > 1e-3  # the folded part matters


def test_scaled_stack_is_the_product_of_the_vectors(tiny):
    """Stack of (IA)^3 adapters: each projection's output is rescaled by every vector there, in any order:
    (W x + b) * l_a * l_t (adapters' Stack feeds each IA3 the previous one's vector)."""
    model, inputs = tiny
    with_new_methods(model)
    setup, kind = cell(("ia3_a",), "ia3_t")
    assert kind is Semantics.SEQUENTIAL
    got = logits(model, inputs, setup)
    with folded(model, "ia3_a", "ia3_t"):
        assert torch.allclose(got, logits(model, inputs, None), atol=1e-5, rtol=0)
    assert torch.allclose(got, logits(model, inputs, cell(("ia3_t",), "ia3_a")[0]), atol=1e-5, rtol=0)
    for single in ("ia3_a", "ia3_t"):
        assert max_diff(got, logits(model, inputs, single)) > 1e-3
    # on different modules (q, v and k, v, intermediate) each vector scales its own, v gets both
    mixed = logits(model, inputs, cell(("ia3_q",), "ia3_t")[0])
    with folded(model, "ia3_q", "ia3_t"):
        assert torch.allclose(mixed, logits(model, inputs, None), atol=1e-5, rtol=0)
    # layer level, on the value projection
    value = model.base_model.encoder.layer[0].attention.self.value
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(5))
    methods.activate(model, setup, HEAD)
    with torch.no_grad():
        expected = (x @ value.weight.T + value.bias) * value.loras["ia3_a"].lora_B.view(-1) \
            * value.loras["ia3_t"].lora_B.view(-1)
        assert torch.allclose(value(x), expected, atol=1e-6, rtol=0)


def test_fusion_of_houlsby_members(tiny):
    """Fuse(hb_a, hb_b): an AdapterFusion layer at both houlsby sites (after attention, after the FFN), both in
    the path; the target (houlsby) follows at each."""
    model, inputs = tiny
    with_new_methods(model)
    names = {n: p.numel() for n, p in model.named_parameters() if "adapter_fusion_layer.hb_a,hb_b." in n}
    assert {n.split(".adapter_fusion_layer.")[0] for n in names} == {
        f"roberta.encoder.layer.{i}.{site}" for i in LAYERS for site in ("attention.output", "output")}
    assert sum(names.values()) == 2 * 2 * (3 * 128 * 128 + 2 * 128) == 197632
    setup, kind = cell(("hb_a", "hb_b"), "hb_t", Block.FUSE)
    assert kind is Semantics.FUSION
    got = logits(model, inputs, setup)
    assert got.shape == (6, 2) and torch.isfinite(got).all()
    for other in ("hb_t", cell(("hb_a",), "hb_t")[0], cell(("hb_b",), "hb_t")[0]):
        assert max_diff(got, logits(model, inputs, other)) > 1e-4, other
    zero_(model, "attention.output.adapter_fusion_layer.hb_a,hb_b.value.weight")
    after_attention = logits(model, inputs, setup)
    assert max_diff(got, after_attention) > 1e-4
    zero_(model, "layer.0.output.adapter_fusion_layer.hb_a,hb_b.value.weight")
    assert max_diff(after_attention, logits(model, inputs, setup)) > 1e-4


def test_fusion_scaling_target(tiny):
    """Stack(Fuse(bn_a, bn_b), ia3_t): the fusion after the FFN, the (IA)^3 vectors in k, v, intermediate."""
    from adapters.composition import Fuse

    model, inputs = tiny
    with_new_methods(model)
    setup, kind = cell(("bn_a", "bn_b"), "ia3_t", Block.FUSE)
    assert kind is Semantics.FUSION
    got = logits(model, inputs, setup)
    fuse_only = logits(model, inputs, Fuse("bn_a", "bn_b"))
    assert max_diff(got, fuse_only) > 1e-3
    with folded(model, "ia3_t"):
        assert torch.allclose(got, logits(model, inputs, Fuse("bn_a", "bn_b")), atol=1e-5, rtol=0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "loras.ia3_t." in n:
                p.fill_(1.0)  # the identity (IA)^3, as a fresh one starts
    assert torch.allclose(logits(model, inputs, setup), fuse_only, atol=1e-6, rtol=0)


def test_adapters_stack_of_ia3_and_lora_chains_them(tiny):
    """Why a Stack of (IA)^3 and LoRA is refused: in a layer both update (v), adapters' Stack feeds the LoRA
    branch the (IA)^3 vector instead of the layer input, which is neither both applied nor either alone."""
    from adapters.composition import Stack

    model, inputs = tiny
    with_new_methods(model)
    got = logits(model, inputs, Stack("ia3_a", "lora_t"))
    with folded(model, "ia3_a", "lora_t"):
        assert max_diff(got, logits(model, inputs, None)) > 1e-3
    value = model.base_model.encoder.layer[0].attention.self.value
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(6))
    methods.activate(model, Stack("ia3_a", "lora_t"), HEAD)
    lo, vector = value.loras["lora_t"], value.loras["ia3_a"].lora_B.view(1, 1, -1)
    with torch.no_grad():
        chained = x @ value.weight.T + value.bias + 2.0 * (vector @ lo.lora_A.T @ lo.lora_B.T)
        assert torch.allclose(value(x), chained, atol=1e-5, rtol=0)


def test_adapters_cannot_fuse_houlsby_with_bottleneck_members(tiny):
    model, _ = tiny
    with_new_methods(model)
    with pytest.raises(ValueError, match="same value for config attribute mh_adapter"):
        methods.add_fusion(model, ("hb_a", "bn_a"))


FUSE_SITES = ("Fuse members must have their bottlenecks at the same places, AdapterFusion mixes their outputs "
              "place by place ({detail}); fuse adapters of one method")


@pytest.mark.parametrize("target", [bn("t"), hb("t"), lora("t"), ia3("t")], ids=["bn", "hb", "lora", "ia3"])
def test_fuse_of_houlsby_and_bottleneck_members_refused(target):
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.FUSE, [hb("h"), bn("b")], target)
    assert str(err.value) == FUSE_SITES.format(detail="h: after attention, after the FFN; b: after the FFN")


SCALING_AND_LORA = ("a Stack cannot hold (IA)^3 and LoRA adapters together: both live in the same linear layers, "
                    "where the adapters library chains a Stack's branches (a LoRA branch would act on the (IA)^3 "
                    "scaling vector, not on the layer's input); (IA)^3: {ia3}; LoRA: {lora}")


@pytest.mark.parametrize("members, target, ia3_names, lora_names", [
    ([ia3("i")], lora("t"), "i", "t"),
    ([lora("la")], ia3("t"), "t", "la"),
    ([ia3("i"), lora("la")], bn("t"), "i", "la"),
    ([bn("b"), ia3("i")], lora("t"), "i", "t"),
    ([lora("la"), bn("b")], ia3("t"), "t", "la"),
    ([ia3("i"), lora("la"), ia3("j")], ia3("t"), "i, j, t", "la"),
    ([lora("la", LoRATarget.Q)], ia3("t", LoRATarget.INTERMEDIATE), "t", "la"),
], ids=["ia3->lora", "lora->ia3", "ia3+lora->bn", "bn+ia3->lora", "lora+bn->ia3", "ia3+lora+ia3->ia3",
        "disjoint-modules"])
def test_ia3_and_lora_in_one_stack_refused(members, target, ia3_names, lora_names):
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.STACK, members, target)
    assert str(err.value) == SCALING_AND_LORA.format(ia3=ia3_names, lora=lora_names)


FUSE_IA3 = ("Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); (IA)^3 member(s): "
            "{names} rescale projections and have no output to mix. Use Stack for (IA)^3 adapters")


@pytest.mark.parametrize("members, target, names", [
    ([bn("a"), ia3("i")], bn("t"), "i"),
    ([ia3("i"), ia3("j")], ia3("t"), "i, j"),
    ([hb("h"), ia3("i")], lora("t"), "i"),
    ([lora("la"), ia3("i")], bn("t"), "i"),
], ids=["bn+ia3->bn", "ia3+ia3->ia3", "hb+ia3->lora", "lora+ia3->bn"])
def test_fuse_with_an_ia3_member_refused(members, target, names):
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.FUSE, members, target)
    assert str(err.value) == FUSE_IA3.format(names=names)


def test_new_methods_refusal_by_method_names():
    assert comp.refusal(Block.STACK, ["houlsby", "bottleneck"], "houlsby") is None
    assert comp.refusal(Block.STACK, ["houlsby"], "ia3") is None
    assert comp.refusal(Block.STACK, ["ia3", "ia3"], "ia3") is None
    assert comp.refusal(Block.FUSE, ["houlsby", "houlsby"], "ia3") is None
    assert comp.refusal(Block.FUSE, ["houlsby", "bottleneck"], "bottleneck") == FUSE_SITES.format(
        detail="m1: after attention, after the FFN; m2: after the FFN")
    assert comp.refusal(Block.STACK, ["ia3"], "lora") == SCALING_AND_LORA.format(ia3="m1", lora="target")
    assert comp.refusal(Block.FUSE, ["ia3", "ia3"], "ia3") == FUSE_IA3.format(names="m1, m2")
    assert comp.refusal(Block.STACK, ["full"], "ia3") == comp.refusal(Block.FUSE, ["houlsby"] * 2, "full") \
        == comp.FULL_REFUSED


# ------------------------------------------------------------------------------- the capability table itself
# Every supported cell of comp.RULES (row name, target family) -> the numeric tests above that pin it.
CELL_TESTS = {
    ("stack-sequential", "bottleneck"): ["test_sequential_is_order_sensitive", "test_sequential_layer_formula",
                                         "test_sequential_with_identity_member_is_the_target_alone",
                                         "test_houlsby_sequential_layer_formula"],
    ("stack-placed-lora-target", "lora"): ["test_placed_bottleneck_member_lora_target",
                                           "test_placed_cells_equal_the_folded_weights"],
    ("stack-placed-lora-member", "bottleneck"): ["test_placed_lora_member_bottleneck_target",
                                                 "test_placed_cells_equal_the_folded_weights"],
    ("stack-sum", "lora"): ["test_sum_equals_merged_weight_sum", "test_sum_is_not_the_adapters_library_stack"],
    ("fuse-bottleneck", "bottleneck"): ["test_fusion_bottleneck_target", "test_fusion_parameters",
                                        "test_fusion_of_houlsby_members"],
    ("fuse-bottleneck", "lora"): ["test_fusion_lora_target"],
    ("average-bottleneck", "bottleneck"): ["test_average_bottleneck_layer_formula",
                                           "test_average_bottleneck_logits_follow_the_weights"],
    ("average-lora", "lora"): ["test_average_lora_equals_merged_weighted_sum", "test_average_lora_layer_formula"],
    # the formula, the gradients and bit-identical members are pinned in tests/unit/test_lora_fusion.py
    ("fuse-lora", "lora"): ["test_lora_fusion_one_hot_is_stack_lora_target"],
    ("fuse-lora", "bottleneck"): ["test_lora_fusion_one_hot_is_stack_bottleneck_target"],
    # new methods (issue 14)
    ("stack-scaled", "scaling"): ["test_scaled_stack_is_the_product_of_the_vectors"],
    ("stack-placed-scaling", "bottleneck"): ["test_placed_cells_equal_the_folded_weights"],
    ("stack-placed-scaling", "scaling"): ["test_placed_cells_equal_the_folded_weights"],
    ("fuse-bottleneck", "scaling"): ["test_fusion_scaling_target"],
}


def test_every_supported_cell_is_pinned_by_a_numeric_test():
    supported = {(rule.name, family.value) for rule in comp.RULES if isinstance(rule.outcome, Semantics)
                 for family in sorted(rule.target or (), key=lambda f: f.value)}
    assert set(CELL_TESTS) == supported
    numeric = {name for name, value in globals().items() if name.startswith("test_") and callable(value)
               and "tiny" in value.__code__.co_varnames[:value.__code__.co_argcount]}
    assert {test for tests in CELL_TESTS.values() for test in tests} <= numeric
    # the semantics-table examples reach every supported cell (and every refusal row but the full ones)
    reached = {(comp.rule_for(block, members, target).name, target.family.value)
               for block, members, target, _ in SEMANTICS_TABLE}
    assert reached == supported


def test_rule_names_are_distinct_and_rows_match_families_not_methods():
    assert len({rule.name for rule in comp.RULES}) == len(comp.RULES)
    for rule in comp.RULES:
        assert set(rule.members) <= set(comp.Family) and (rule.target is None or set(rule.target) <= set(comp.Family))


def test_refusal_by_method_names():
    assert comp.refusal(Block.STACK, ["bottleneck", "bottleneck"], "lora") is None
    assert comp.refusal(Block.STACK, ["lora"], "lora") is None
    assert comp.refusal(Block.FUSE, ["bottleneck", "bottleneck"], "lora") is None
    assert comp.refusal(Block.FUSE, ["bottleneck", "lora"], "bottleneck") == (
        "Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); LoRA member(s): m2. "
        "Use Stack for LoRA adapters")
    assert comp.refusal(Block.STACK, ["lora", "bottleneck"], "lora") == (
        "a Stack with several LoRA adapters cannot also hold a bottleneck adapter: LoRA: m1, target; make every "
        "member LoRA, or keep one LoRA")
    assert comp.refusal(Block.STACK, ["full"], "bottleneck") == comp.FULL_REFUSED
    assert comp.refusal(Block.FUSE, ["bottleneck", "bottleneck"], "full") == comp.FULL_REFUSED


def test_blocks_carry_their_own_data():
    assert {b: (b.min_members, r.mode, sorted(s.value for s in r.setups)) for b, r in comp.BLOCKS.items()} == {
        Block.STACK: (1, "adapter", ["placed", "sequential", "sum"]),
        Block.FUSE: (2, "fusion", ["fusion", "lora-fusion"]),
        Block.AVERAGE: (2, "adapter", ["average", "weighted-sum"])}
    assert set(comp.BLOCKS) == set(Block)
    for rule in comp.RULES:  # every semantics a row gives, its block can build
        if isinstance(rule.outcome, Semantics) and rule.block is not None:
            assert rule.outcome in comp.BLOCKS[rule.block].setups


def test_readme_composition_table_is_generated_from_the_rules():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- composition-table:start -->\n", "<!-- composition-table:end -->"
    assert readme.count(start) == 1 and readme.count(end) == 1
    assert readme.split(start, 1)[1].split(end, 1)[0] == comp.markdown_table()


# AVERAGE (issue 14) -----------------------------------------------------------------------------------------
MIXED = ("Average members and the target must all be bottleneck or all LoRA adapters (bottleneck: {}; LoRA: {}): "
         "the adapters library's Average mixes one kind of layer state")
RULE = ("weights are NAME=W for every member or for none (uniform), each W a finite number > 0; they are normalised "
        "to sum 1")


@pytest.mark.parametrize("text, weights, described", [
    ("Average(a, b)", None, "Average(a, b) + t"),
    ("average(a=0.7, b=0.3)", (0.7, 0.3), "Average(a=0.70, b=0.30) + t"),
    (" AVERAGE ( a = 2 , b=1, c=1 ) ", (0.5, 0.25, 0.25), "Average(a=0.50, b=0.25, c=0.25) + t"),
])
def test_parse_average(text, weights, described):
    parsed = comp.parse(text)
    assert parsed.block is Block.AVERAGE and parsed.weights == weights
    assert parsed.mix == (weights or tuple(1 / len(parsed.members) for _ in parsed.members))
    assert comp.parse(str(parsed)) == parsed  # str() writes what parse() reads, weights exactly
    assert comp.describe(parsed, "t") == described


def test_recorded_weights_rebuild_exactly():
    """Normalised weights normalise to themselves (a reloaded run rebuilds the same floats)."""
    given = Composition(Block.AVERAGE, ("a", "b", "c"), (1.0, 1.0, 1.0))
    assert given.weights == (1 / 3, 1 / 3, 1 / 3)
    assert Composition(Block.AVERAGE, ("a", "b", "c"), given.weights).weights == given.weights


@pytest.mark.parametrize("text, why", [
    ("Average(a)", "Average needs at least two members"),
    ("Average(a=0.7, b)", f"'b' has no weight; {RULE}"),
    ("Average(a, b=0.3)", f"'a' has no weight; {RULE}"),
    ("Average(a=x, b=1)", f"weight 'x' of 'a' is not a number; {RULE}"),
    ("Average(a=, b=1)", f"weight '' of 'a' is not a number; {RULE}"),
    ("Average(a=0, b=1)", f"weight 0.0 of 'a' is not a finite number > 0; {RULE}"),
    ("Average(a=1, b=-2)", f"weight -2.0 of 'b' is not a finite number > 0; {RULE}"),
    ("Average(a=nan, b=1)", f"weight nan of 'a' is not a finite number > 0; {RULE}"),
    ("Average(a=inf, b=1)", f"weight inf of 'a' is not a finite number > 0; {RULE}"),
    ("Stack(a=1)", "Stack takes no weights (only Average does)"),
    ("Fuse(a=0.5, b=0.5)", "Fuse takes no weights (only Average does)"),
    ("Average(a=1, a=2)", "composition members must be distinct"),
])
def test_parse_average_refuses(text, why):
    with pytest.raises(StepstoneError) as err:
        comp.parse(text)
    assert str(err.value) == f"bad composition '{text}': {why}"


def test_average_weights_count_must_match_members():
    with pytest.raises(ValueError, match=r"^2 members but 3 weights; weights are NAME=W"):
        Composition(Block.AVERAGE, ("a", "b"), (0.2, 0.3, 0.5))


@pytest.mark.parametrize("members, target, bottlenecks, loras", [
    ([bn("a"), lora("la")], bn("t"), "a, t", "la"),
    ([bn("a"), lora("la")], lora("lt"), "a", "la, lt"),
    ([bn("a"), bn("b")], lora("lt"), "a, b", "lt"),
    ([lora("la"), lora("lb")], bn("t"), "t", "la, lb"),
], ids=["bn+lora->bn", "bn+lora->lora", "bn+bn->lora", "lora+lora->bn"])
def test_average_of_mixed_families_refused(members, target, bottlenecks, loras):
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.AVERAGE, members, target)
    assert str(err.value) == MIXED.format(bottlenecks, loras)


def test_average_lora_refuses_different_target_modules():
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.AVERAGE, [lora("la"), lora("lb", LoRATarget.INTERMEDIATE)], lora("lt"))
    assert str(err.value) == ("LoRA adapters in one Average must update the same modules (la: q, v; "
                              "lb: intermediate; lt: q, v)")


def test_average_adapters_setup():
    """adapters' Average computes mean_i(w_i h_i), so stepstone passes n w_i un-normalised."""
    from adapters.composition import Average, Stack

    weighted = Composition(Block.AVERAGE, ("a", "b"), (0.7, 0.3))
    setup = comp.adapters_setup(weighted, "t", Semantics.AVERAGE)
    assert isinstance(setup, Stack) and isinstance(setup.children[0], Average) and setup.children[1] == "t"
    assert setup.children[0].children == ["a", "b"] and setup.children[0].weights == [2 * 0.7, 2 * 0.3]
    summed = comp.adapters_setup(weighted, "t", Semantics.WEIGHTED_SUM)
    assert isinstance(summed, Average) and summed.children == ["a", "b", "t"]
    assert summed.weights == [3 * 0.7, 3 * 0.3, 3.0]
    uniform = comp.adapters_setup(Composition(Block.AVERAGE, ("a", "b")), "t", Semantics.AVERAGE)
    assert uniform.children[0].weights == [1.0, 1.0]


def _average_setup(model_methods: dict, target: str, weights):
    members = tuple(model_methods)
    composition = Composition(Block.AVERAGE, members, weights)
    kind = comp.semantics(Block.AVERAGE, [Member(m, x.kind, x.lora if x.kind == "lora" else None)
                                          for m, x in model_methods.items()],
                          Member(target, "bottleneck" if target.startswith("bn") else "lora", LORA_T.lora
                                 if target.startswith("lora") else None))
    return comp.adapters_setup(composition, target, kind), kind


@pytest.mark.parametrize("weights, mix", [(None, (0.5, 0.5)), ((0.7, 0.3), (0.7, 0.3))], ids=["uniform", "weighted"])
def test_average_bottleneck_layer_formula(tiny, weights, mix):
    """In each layer's FFN output: h = dense(x), f_k(z) = z + up_k(relu(down_k(LN(z + r)))); the output is
    LN(f_t(w_a f_a(h) + w_b f_b(h)) + r): the weighted mean of the members' outputs, then the target."""
    model, _ = tiny
    setup, kind = _average_setup({"bn_a": BN, "bn_b": BN}, "bn_t", weights)
    assert kind is Semantics.AVERAGE
    methods.activate(model, setup, HEAD)
    generator = torch.Generator().manual_seed(3)
    for i in LAYERS:
        out = model.base_model.encoder.layer[i].output
        x, r = torch.randn(2, 5, 256, generator=generator), torch.randn(2, 5, 128, generator=generator)

        def f(name, z):
            adapter = out.adapters[name]
            return z + adapter.adapter_up(torch.relu(adapter.adapter_down[0](out.LayerNorm(z + r))))

        with torch.no_grad():
            h = out.dense(x)
            expected = out.LayerNorm(f("bn_t", mix[0] * f("bn_a", h) + mix[1] * f("bn_b", h)) + r)
            assert torch.allclose(out(x, r), expected, atol=1e-5, rtol=0)


def test_average_bottleneck_logits_follow_the_weights(tiny):
    model, inputs = tiny
    uniform = logits(model, inputs, _average_setup({"bn_a": BN, "bn_b": BN}, "bn_t", None)[0])
    weighted = logits(model, inputs, _average_setup({"bn_a": BN, "bn_b": BN}, "bn_t", (0.7, 0.3))[0])
    assert max_diff(uniform, weighted) > 1e-4
    # two identical members average to either alone: Average(bn_a, bn_a') + bn_t == Stack(bn_a, bn_t)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapters.bn_b." in name:
                param.copy_(dict(model.named_parameters())[name.replace(".bn_b.", ".bn_a.")])
    stacked = logits(model, inputs, comp.adapters_setup(Composition(Block.STACK, ("bn_a",)), "bn_t",
                                                        Semantics.SEQUENTIAL))
    for weights in (None, (0.7, 0.3)):
        got = logits(model, inputs, _average_setup({"bn_a": BN, "bn_b": BN}, "bn_t", weights)[0])
        assert torch.allclose(got, stacked, atol=1e-5, rtol=0)


def _with_lora_b(model):
    methods.add_adapter(model, "lora_b", LORA_A)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".loras.lora_b." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    model.eval()


def test_average_lora_equals_merged_weighted_sum(tiny):
    """Average(lora_a=0.7, lora_b=0.3) + lora_t == no adapter, W + 0.7 dW_a + 0.3 dW_b + dW_t in q and v."""
    model, inputs = tiny
    _with_lora_b(model)
    setup, kind = _average_setup({"lora_a": LORA_A, "lora_b": LORA_A}, "lora_t", (0.7, 0.3))
    assert kind is Semantics.WEIGHTED_SUM
    got = logits(model, inputs, setup)
    saved = {}
    with torch.no_grad():
        for i, which, module in lora_linears(model):
            saved[i, which] = module.weight.detach().clone()
            module.weight.add_(0.7 * delta(module, "lora_a") + 0.3 * delta(module, "lora_b") + delta(module, "lora_t"))
    reference = logits(model, inputs, None)
    with torch.no_grad():
        for i, which, module in lora_linears(model):
            module.weight.copy_(saved[i, which])
    assert torch.allclose(got, reference, atol=1e-5, rtol=0)
    uniform = logits(model, inputs, _average_setup({"lora_a": LORA_A, "lora_b": LORA_A}, "lora_t", None)[0])
    assert max_diff(got, uniform) > 1e-4


@pytest.mark.parametrize("weights, mix", [(None, (0.5, 0.5)), ((0.7, 0.3), (0.7, 0.3))], ids=["uniform", "weighted"])
def test_average_lora_layer_formula(tiny, weights, mix):
    model, _ = tiny
    _with_lora_b(model)
    setup, _ = _average_setup({"lora_a": LORA_A, "lora_b": LORA_A}, "lora_t", weights)
    methods.activate(model, setup, HEAD)
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(4))
    for _, _, module in lora_linears(model):
        a, b, t = (module.loras[n] for n in ("lora_a", "lora_b", "lora_t"))
        with torch.no_grad():
            expected = (x @ module.weight.T + module.bias + mix[0] * 1.0 * (x @ a.lora_A.T @ a.lora_B.T)
                        + mix[1] * 1.0 * (x @ b.lora_A.T @ b.lora_B.T) + 2.0 * (x @ t.lora_A.T @ t.lora_B.T))
            assert torch.allclose(module(x), expected, atol=1e-5, rtol=0)


def test_the_semantics_names_its_own_trained_layer_and_so_the_training_mode():
    from stepstone.manifest import SCHEMA, mode_names
    from stepstone.methods import METHODS

    assert comp.trained_layer(None) is None and comp.trained_layer(Semantics.SEQUENTIAL) is None
    fusion = comp.trained_layer(Semantics.FUSION)
    assert (fusion.mode, fusion.folder, fusion.name(("a", "b")), fusion.activate) == ("fusion", "fusion", "a,b", None)
    assert [comp.training_mode(s, "bottleneck") for s in (None, Semantics.SEQUENTIAL, Semantics.FUSION)] == \
        ["adapter", "adapter", "fusion"]
    assert (comp.training_mode(Semantics.SUM, "lora"), comp.training_mode(None, "full")) == ("adapter", "full")
    # the modes a manifest may name are derived from the methods and the layers, not listed by hand
    assert SCHEMA["mode"] == mode_names()
    assert set(mode_names()) == {"adapter", *(METHODS.get(m).train_mode for m in METHODS.in_order()),
                                 *(layer.mode for layer in comp.LAYERS.values())} >= {"adapter", "full", "fusion"}


# ------------------------------------------------------------------------ every cell has a row (issue 14)
def test_fuse_over_lora_members_refuses_a_scaling_target():
    message = ("Fuse over LoRA members takes a bottleneck or LoRA target: the gates add the members' updates to a "
               "layer's output, which an (IA)^3 target rescales, so the members' updates would escape its scaling")
    assert comp.refusal(Block.FUSE, ["lora", "lora"], "ia3") == message
    with pytest.raises(StepstoneError) as err:
        comp.semantics(Block.FUSE, [lora("a"), lora("b")], ia3("t"))
    assert str(err.value) == message


def test_every_cell_of_registered_methods_is_decided_by_a_row():
    """Every block over one to three members of any registered methods, under any target method, is either a
    semantics or a refusal with its reason: no combination falls through the table."""
    import itertools

    from stepstone.methods import METHODS

    names = METHODS.in_order()
    decided = 0
    for block in Block:
        for count in range(block.min_members, 4):
            for members in itertools.combinations_with_replacement(names, count):
                for target in names:
                    reason = comp.refusal(block, list(members), target)
                    assert reason is None or (isinstance(reason, str) and reason), (block, members, target)
                    decided += 1
    assert decided == sum(len(list(itertools.combinations_with_replacement(names, c))) * len(names)
                          for b in Block for c in range(b.min_members, 4))
