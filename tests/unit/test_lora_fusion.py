"""Fuse over LoRA members (stepstone.lora_fusion): numeric pins on the tiny backbone.

Members lora_a, lora_b, lora_c (LoRA on q, v; different ranks and scalings; lora_b with dropout), targets
lora_t (LoRA on q, v) and bn_t (bottleneck). Adapter weights are random under a fixed seed (LoRA B starts at
zero), as in test_composition.py, whose tolerances these tests use.
"""
from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import torch

from stepstone import composition as comp
from stepstone import lora_fusion as lf
from stepstone import methods
from stepstone.backbone import load_backbone
from stepstone.composition import Member
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.methods import BottleneckSpec, LoRASpec, LoRATarget
from stepstone.specs import BackboneSpec, Block, Composition, MethodSpec
from stepstone.tasks import get_task
from stepstone.toy import generate

torch.set_num_threads(1)

QV = (LoRATarget.Q, LoRATarget.V)
BN = MethodSpec(kind="bottleneck", bottleneck=BottleneckSpec(reduction_factor=16))
LORAS = {
    "lora_a": MethodSpec(kind="lora", lora=LoRASpec(r=4, alpha=4, target_modules=QV)),
    "lora_b": MethodSpec(kind="lora", lora=LoRASpec(r=2, alpha=8, dropout=0.25, target_modules=QV)),
    "lora_c": MethodSpec(kind="lora", lora=LoRASpec(r=8, alpha=8, target_modules=QV)),
    "lora_t": MethodSpec(kind="lora", lora=LoRASpec(r=8, alpha=16, target_modules=QV)),
    "lora_i": MethodSpec(kind="lora", lora=LoRASpec(r=4, alpha=4,
                                                             target_modules=(LoRATarget.INTERMEDIATE,))),
}
SCALING = {"lora_a": 1.0, "lora_b": 4.0, "lora_c": 1.0, "lora_t": 2.0}
MEMBERS = ("lora_a", "lora_b", "lora_c")
METHODS = {**LORAS, "bn_t": BN, "bn_a": BN}
FUSION = "fz"
HEAD = "head"
GATED = [f"roberta.encoder.layer.{i}.attention.self.{w}" for i in (0, 1) for w in ("query", "value")]


def _build():
    """Tiny backbone, the adapters above + an (IA)^3 and a DoRA LoRA, a classification head; random weights."""
    from adapters import IA3Config, LoRAConfig

    backbone = load_backbone(BackboneSpec())
    model = backbone.model
    for name, method in METHODS.items():
        methods.add_adapter(model, name, method)
    model.add_adapter("ia3", config=IA3Config())
    model.add_adapter("dora", config=LoRAConfig(use_dora=True))
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
    model, inputs = _build()
    assert lf.add_lora_fusion(model, MEMBERS, FUSION) == 4
    return model, inputs


def logits(model, inputs, setup, fusion: str | None = None, weights=None) -> torch.Tensor:
    methods.activate(model, setup, HEAD)
    lf.activate_lora_fusion(model, fusion)
    try:
        with torch.no_grad(), (lf.fixed_gate(model, fusion, weights) if weights is not None else _nothing()):
            return model(**inputs).logits
    finally:
        lf.activate_lora_fusion(model, None)


@contextmanager
def _nothing():
    yield


def stack_setup(member: str, target: str):
    """Stack(member, target) as stepstone activates it today (semantics computed as the pipeline does)."""
    def record(name):
        method = METHODS[name]
        return Member(name, method.kind, method.options)

    kind = comp.semantics(Block.STACK, [record(member)], record(target))
    return comp.adapters_setup(Composition(Block.STACK, (member,)), target, kind), kind


def one_hot(k: int) -> list[float]:
    return [1.0 if i == k else 0.0 for i in range(len(MEMBERS))]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@contextmanager
def merged(model, coefficients: dict[str, float]):
    """Temporarily add sum_name c * s B A into the plain q / v weights (a reference with no adapter active)."""
    saved = {}
    with torch.no_grad():
        for path in GATED:
            module = model.get_submodule(path)
            saved[path] = module.weight.detach().clone()
            for name, c in coefficients.items():
                lo = module.loras[name]
                assert lo.scaling == SCALING[name]
                module.weight.add_(c * SCALING[name] * (lo.lora_B @ lo.lora_A))
    try:
        yield
    finally:
        with torch.no_grad():
            for path in GATED:
                model.get_submodule(path).weight.copy_(saved[path])


def randomise_gates(model, seed: int = 3) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if methods.adapter_kind_of_parameter(name) == ("lora_fusion", FUSION):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)  # logits ~ N(0, 0.6)


# ------------------------------------------------------------------------------------------- installation
def test_gate_parameters_names_owners_and_zero_init(tiny):
    model, _ = tiny
    gates = {n: p for n, p in model.named_parameters() if ".lora_fusion." in n}
    assert set(gates) == {f"{path}.lora_fusion.{FUSION}.{p}" for path in GATED for p in ("weight", "bias")}
    assert {methods.adapter_kind_of_parameter(n) for n in gates} == {("lora_fusion", FUSION)}
    assert {n: tuple(p.shape) for n, p in gates.items() if n.endswith("weight")} == {
        f"{path}.lora_fusion.{FUSION}.weight": (3, 128) for path in GATED}
    assert sum(p.numel() for p in gates.values()) == 4 * (3 * 128 + 3) == 1548
    assert all(torch.equal(p, torch.zeros_like(p)) for p in gates.values())
    assert lf.lora_fusion_members(model, FUSION) == MEMBERS
    assert lf.trainable_owners(FUSION, "lora_t") == {("lora_fusion", FUSION), ("loras", "lora_t"),
                                                     ("adapters", "lora_t")}


def test_inactive_fusion_changes_nothing(tiny):
    model, inputs = tiny
    fresh, _ = _build()
    for setup in (None, "lora_t", "bn_t"):
        assert torch.equal(logits(model, inputs, setup), logits(fresh, inputs, setup))


# ------------------------------------------------------------------------------------------- (a) one-hot gate
@pytest.mark.parametrize("k", range(len(MEMBERS)), ids=MEMBERS)
def test_one_hot_gate_is_stack_with_that_member_lora_target(tiny, k):
    """LoRA target: one-hot on member k == Stack(k, lora_t), SUM semantics (W + dW_k + dW_t)."""
    model, inputs = tiny
    setup, kind = stack_setup(MEMBERS[k], "lora_t")
    assert kind is comp.Semantics.SUM
    got = logits(model, inputs, "lora_t", FUSION, one_hot(k))
    assert torch.allclose(got, logits(model, inputs, setup), atol=1e-5, rtol=0)
    others = [logits(model, inputs, stack_setup(m, "lora_t")[0]) for m in MEMBERS if m != MEMBERS[k]]
    assert all(max_diff(got, other) > 1e-3 for other in others)


@pytest.mark.parametrize("k", range(len(MEMBERS)), ids=MEMBERS)
def test_one_hot_gate_is_stack_with_that_member_bottleneck_target(tiny, k):
    """Bottleneck target: one-hot on member k == Stack(k, bn_t), PLACED semantics, bit for bit."""
    model, inputs = tiny
    setup, kind = stack_setup(MEMBERS[k], "bn_t")
    assert kind is comp.Semantics.PLACED
    assert torch.equal(logits(model, inputs, "bn_t", FUSION, one_hot(k)), logits(model, inputs, setup))


def test_one_hot_gate_in_train_mode_draws_the_same_dropout(tiny):
    """In train mode (lora_b has dropout 0.25, the backbone its own) a one-hot gate is still exactly
    Stack(lora_b, bn_t): the member's update comes from the library's own LoRA call, at the same point."""
    model, inputs = tiny
    model.train()
    setup, _ = stack_setup("lora_b", "bn_t")
    torch.manual_seed(7)
    got = logits(model, inputs, "bn_t", FUSION, one_hot(1))
    torch.manual_seed(7)
    assert torch.equal(got, logits(model, inputs, setup))
    torch.manual_seed(8)
    assert max_diff(got, logits(model, inputs, setup)) > 1e-4  # dropout is really on


# ------------------------------------------------------------------------------------------- (d) uniform start
@pytest.mark.parametrize("target", ["lora_t", "bn_t"])
def test_initial_gate_is_the_mean_of_member_updates(tiny, target):
    model, inputs = tiny
    got = logits(model, inputs, target, FUSION)
    assert torch.allclose(got, logits(model, inputs, target, FUSION, [1 / 3] * 3), atol=1e-6, rtol=0)
    coefficients = {m: 1 / 3 for m in MEMBERS}
    if target == "lora_t":
        with merged(model, {**coefficients, "lora_t": 1.0}):
            reference = logits(model, inputs, None)
    else:
        with merged(model, coefficients):
            reference = logits(model, inputs, "bn_t")
    assert torch.allclose(got, reference, atol=1e-5, rtol=0)


def test_layer_formula_per_token_softmax(tiny):
    """y = W x + b + s_t B_t A_t x + sum_i softmax(G x + c)_i s_i B_i A_i x, per token, at every gated layer."""
    model, _ = tiny
    randomise_gates(model)
    methods.activate(model, "lora_t", HEAD)
    lf.activate_lora_fusion(model, FUSION)
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(1))
    for path in GATED:
        module = model.get_submodule(path)
        gate = module.lora_fusion[FUSION]
        w = torch.softmax(x @ gate.weight.T + gate.bias, dim=-1)
        assert max_diff(w[0, 0], w[0, 1]) > 1e-3  # really per token

        def update(name):
            lo = module.loras[name]
            return SCALING[name] * (x @ lo.lora_A.T @ lo.lora_B.T)

        with torch.no_grad():
            expected = x @ module.weight.T + module.bias + update("lora_t") + sum(
                w[..., i:i + 1] * update(m) for i, m in enumerate(MEMBERS))
            assert torch.allclose(module(x), expected, atol=1e-5, rtol=0)


def test_members_active_in_the_setup_are_refused(tiny):
    model, inputs = tiny
    setup, _ = stack_setup("lora_a", "lora_t")
    with pytest.raises(StepstoneError) as err:
        logits(model, inputs, setup, FUSION)
    assert str(err.value) == ("LoRA fusion 'fz' is active while its member 'lora_a' is also active (or merged) in "
                              "the adapters setup: its update would count twice; activate the target alone")


def test_survives_model_to(tiny):
    model, inputs = tiny
    randomise_gates(model)
    model.to(torch.float64)
    assert {p.dtype for n, p in model.named_parameters() if ".lora_fusion." in n} == {torch.float64}
    setup, _ = stack_setup("lora_c", "bn_t")
    assert torch.equal(logits(model, inputs, "bn_t", FUSION, one_hot(2)), logits(model, inputs, setup))
    learned = logits(model, inputs, "bn_t", FUSION)
    assert learned.dtype == torch.float64 and max_diff(learned, logits(model, inputs, setup)) > 1e-4


# ------------------------------------------------------------------------------------------- (b), (c) training
def _freeze_all_but(model, owners) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(methods.adapter_kind_of_parameter(name) in owners)


@pytest.mark.parametrize("target", ["lora_t", "bn_t"])
def test_gradients_reach_the_gate_and_the_target_only(tiny, target):
    model, inputs = tiny
    owners = lf.trainable_owners(FUSION, target)
    _freeze_all_but(model, owners)
    model.train()
    methods.activate(model, target, HEAD)
    lf.activate_lora_fusion(model, FUSION)
    model(**inputs).logits.pow(2).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    trained = {n for n in grads if methods.adapter_kind_of_parameter(n) in owners}
    assert {methods.adapter_kind_of_parameter(n)[0] for n in trained} == {
        "lora_fusion", "loras" if target == "lora_t" else "adapters"}
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in trained), \
        [n for n in trained if grads[n] is None or grads[n].abs().sum() == 0]
    assert [n for n in grads if n not in trained and grads[n] is not None] == []


def test_training_steps_leave_members_and_backbone_bit_identical(tiny):
    model, inputs = tiny
    owners = lf.trainable_owners(FUSION, "lora_t")
    _freeze_all_but(model, owners)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    model.train()
    methods.activate(model, "lora_t", HEAD)
    lf.activate_lora_fusion(model, FUSION)
    for _ in range(3):
        optimizer.zero_grad()
        model(**inputs).logits.pow(2).sum().backward()
        optimizer.step()
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == {n for n in before if methods.adapter_kind_of_parameter(n) in owners}
    assert {methods.adapter_kind_of_parameter(n)[0] for n in changed} == {"lora_fusion", "loras"}
    members = [n for n in before if (methods.adapter_kind_of_parameter(n) or ("", ""))[1] in MEMBERS]
    assert len(members) == 3 * 4 * 2 and not set(members) & changed


# ------------------------------------------------------------------------------------------- (e) save / load
def test_save_load_round_trip_bit_identical(tiny, tmp_path):
    from safetensors import safe_open

    model, inputs = tiny
    randomise_gates(model)
    lf.save_lora_fusion(model, tmp_path / "fusion", FUSION)
    assert sorted(p.name for p in (tmp_path / "fusion").iterdir()) == ["lora_fusion.safetensors",
                                                                       "lora_fusion_config.json"]
    config = json.loads((tmp_path / "fusion" / "lora_fusion_config.json").read_text())
    assert config == {"format_version": 1, "kind": "lora_fusion", "name": FUSION, "members": list(MEMBERS),
                      "gate": "softmax(linear(x))", "num_members": 3, "modules": {p: [3, 128] for p in GATED}}
    with safe_open(str(tmp_path / "fusion" / "lora_fusion.safetensors"), "pt") as handle:
        assert set(handle.keys()) == {n for n, _ in model.named_parameters() if ".lora_fusion." in n}
    expected = logits(model, inputs, "lora_t", FUSION)
    for name in (FUSION, "renamed"):
        fresh, _ = _build()
        lf.load_lora_fusion(fresh, tmp_path / "fusion", MEMBERS, name)
        assert torch.equal(logits(fresh, inputs, "lora_t", name), expected)


def _rewrite(file, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(file))
    edit(tensors)
    save_file(tensors, str(file))


Q0 = "roberta.encoder.layer.0.attention.self.query.lora_fusion.fz"
V1 = "roberta.encoder.layer.1.attention.self.value.lora_fusion.fz"


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.pop(f"{V1}.bias"), f"tensor {V1}.bias is missing (shape [3])"),
    (lambda t: t.__setitem__(f"{Q0}.gate", t.pop(f"{Q0}.weight")),
     f"tensor {Q0}.weight is missing (shape [3, 128]); unexpected tensor {Q0}.gate"),
    (lambda t: t.__setitem__(f"{Q0}.weight", torch.zeros(2, 128)),
     f"tensor {Q0}.weight has shape [2, 128], the model's is [3, 128]"),
], ids=["missing", "renamed", "reshaped"])
def test_load_refuses_a_weights_file_that_does_not_fit(tiny, tmp_path, edit, problem):
    model, _ = tiny
    lf.save_lora_fusion(model, tmp_path, FUSION)
    _rewrite(tmp_path / "lora_fusion.safetensors", edit)
    fresh, _ = _build()
    with pytest.raises(StepstoneError) as err:
        lf.load_lora_fusion(fresh, tmp_path, MEMBERS, FUSION)
    assert str(err.value) == f"'{tmp_path / 'lora_fusion.safetensors'}' does not fit the model: {problem}"
    assert not [n for n, _ in fresh.named_parameters() if ".lora_fusion." in n]  # nothing was added


def test_load_refuses_configs_that_do_not_fit(tiny, tmp_path):
    model, _ = tiny
    lf.save_lora_fusion(model, tmp_path, FUSION)
    file = tmp_path / "lora_fusion_config.json"
    original = json.loads(file.read_text())
    fresh, _ = _build()

    def refused(given=MEMBERS, **changes):
        file.write_text(json.dumps({**original, **changes}))
        with pytest.raises(StepstoneError) as err:
            lf.load_lora_fusion(fresh, tmp_path, given, FUSION)
        return str(err.value)

    assert refused(("lora_b", "lora_a", "lora_c")) == (
        f"{file}: fuses ['lora_a', 'lora_b', 'lora_c'], but the members are ['lora_b', 'lora_a', 'lora_c']")
    assert refused(members=["lora_a", "lora_b"]) == (
        f"{file}: fuses ['lora_a', 'lora_b'], but the members are ['lora_a', 'lora_b', 'lora_c']")
    modules = {k: v for k, v in original["modules"].items() if k != GATED[1]}
    assert refused(modules=modules) == f"{file}: no gate for {GATED[1]}, which the members update"
    assert refused(modules={**original["modules"], GATED[0]: [3, 64]}) == (
        f"{file}: the gate of {GATED[0]} has shape [3, 64], the model's is [3, 128]")
    assert refused(gate="attention") == f"{file}: gate 'attention', this stepstone computes 'softmax(linear(x))'"
    assert refused(format_version=2) == f"{file}: format_version 2, this stepstone reads 1"
    assert refused(members="lora_a") == f"{file}: not a LoRA fusion config ('members' is missing or of the wrong type)"
    file.unlink()
    with pytest.raises(StepstoneError, match="lora_fusion_config.json' is missing"):
        lf.load_lora_fusion(fresh, tmp_path, MEMBERS, FUSION)
    file.write_text(json.dumps(original))
    (tmp_path / "lora_fusion.safetensors").unlink()
    with pytest.raises(StepstoneError) as err:
        lf.load_lora_fusion(fresh, tmp_path, MEMBERS, FUSION)
    assert str(err.value) == f"'{tmp_path / 'lora_fusion.safetensors'}' is missing"
    assert not [n for n, _ in fresh.named_parameters() if ".lora_fusion." in n]


# ------------------------------------------------------------------------------------------- (f) refusals
PREFIX = "Fuse over LoRA members takes plain LoRA adapters only: "
REFUSALS = [
    (("lora_a", "bn_a"), PREFIX + "'bn_a' is a bottleneck adapter: it transforms the layer's output "
     "(h + up(f(down(h)))) instead of adding a low-rank update to a linear layer, so there is no update to weight; "
     "fuse bottleneck adapters with AdapterFusion (every member bottleneck)"),
    (("ia3", "lora_a"), PREFIX + "'ia3' is an (IA)^3-style LoRA (composition_mode 'scale'): it rescales the layer's "
     "output instead of adding an update, so there is no additive delta to weight"),
    (("lora_a", "dora"), PREFIX + "'dora' uses DoRA: its update is not the plain additive s B A x the gate weights "
     "(use plain LoRA members)"),
    (("lora_a", "nope"), PREFIX + "there is no adapter named 'nope' in the model"),
    (("lora_a", "lora_i"), "LoRA members of one Fuse must update the same modules (lora_a: attention.self.query, "
     "attention.self.value in 4 layers; lora_i: intermediate.dense in 2 layers)"),
    (("lora_a", "lora_a"), "Fuse over LoRA members needs one or more distinct members, got ['lora_a', 'lora_a']"),
    ((), "Fuse over LoRA members needs one or more distinct members, got []"),
]


@pytest.mark.parametrize("members, message", REFUSALS,
                         ids=["bottleneck", "ia3", "dora", "unknown", "modules", "duplicate", "empty"])
def test_add_refuses(members, message):
    model, _ = _build()
    with pytest.raises(StepstoneError) as err:
        lf.add_lora_fusion(model, members, "f")
    assert str(err.value) == message
    assert not [n for n, _ in model.named_parameters() if ".lora_fusion." in n]


def test_add_refuses_names(tiny):
    model, _ = tiny
    with pytest.raises(StepstoneError, match="^the model already has a LoRA fusion named 'fz'$"):
        lf.add_lora_fusion(model, MEMBERS, FUSION)
    with pytest.raises(StepstoneError, match=r"^invalid LoRA fusion name 'a\.b': it must be non-empty and hold no"):
        lf.add_lora_fusion(model, MEMBERS, "a.b")
    with pytest.raises(StepstoneError, match="^the model has no LoRA fusion named 'other'"):
        lf.activate_lora_fusion(model, "other")
    with pytest.raises(StepstoneError, match=r"^fixed gate of LoRA fusion 'fz': expected 3 finite weights, got \[1.0\]$"):
        with lf.fixed_gate(model, FUSION, [1.0]):
            pass


def test_two_fusions_and_delete(tiny):
    model, inputs = tiny
    assert lf.add_lora_fusion(model, ("lora_c", "lora_a"), "second") == 4
    setup, _ = stack_setup("lora_a", "bn_t")
    assert torch.equal(logits(model, inputs, "bn_t", "second", [0.0, 1.0]), logits(model, inputs, setup))
    lf.delete_lora_fusion(model, "second")
    assert {methods.adapter_kind_of_parameter(n) for n, _ in model.named_parameters() if ".lora_fusion." in n} == {
        ("lora_fusion", FUSION)}
    with pytest.raises(StepstoneError, match="no LoRA fusion named 'second'"):
        lf.activate_lora_fusion(model, "second")


def test_deepcopy_keeps_the_fusion(tiny):
    import copy

    model, inputs = tiny
    randomise_gates(model)
    twin = copy.deepcopy(model)
    assert torch.equal(logits(twin, inputs, "lora_t", FUSION), logits(model, inputs, "lora_t", FUSION))


def test_saving_the_target_or_a_member_holds_no_gate(tiny, tmp_path):
    from safetensors import safe_open

    model, _ = tiny
    for name in ("lora_t", "lora_a"):
        methods.save_adapter(model, tmp_path / name, name, with_head=False)
        with safe_open(str(tmp_path / name / "adapter.safetensors"), "pt") as handle:
            keys = set(handle.keys())
        assert keys and {methods.adapter_kind_of_parameter(k) for k in keys} == {("loras", name)}


def test_gradient_checkpointing_gives_the_same_gradients():
    """stepstone's loop may switch checkpointing on (training.py): the hook re-runs in the recomputation and the
    gradients are those of the plain backward, bit for bit (dropout of lora_b included)."""
    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model, inputs = _build()
        lf.add_lora_fusion(model, MEMBERS, FUSION)
        randomise_gates(model)
        _freeze_all_but(model, lf.trainable_owners(FUSION, "lora_t"))
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        methods.activate(model, "lora_t", HEAD)
        lf.activate_lora_fusion(model, FUSION)
        torch.manual_seed(0)
        model(**inputs).logits.pow(2).sum().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert len(plain) == 16 and set(plain) == set(checkpointed)  # 8 gate + 8 target tensors
    assert all(torch.equal(plain[n], checkpointed[n]) for n in plain)
