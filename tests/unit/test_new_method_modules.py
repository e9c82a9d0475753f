"""The methods added to prove the registry (issue 14): houlsby (Houlsby et al. 2019 double bottleneck) and ia3
((IA)^3, Liu et al. 2022): their settings, adapters-library configs, shape checks, parameter counts on `tiny`."""
from __future__ import annotations

import pytest
import torch

from stepstone import methods
from stepstone.backbone import load_backbone
from stepstone.config import ConfigError, build
from stepstone.errors import StepstoneError
from stepstone.methods import Family, HoulsbySpec, IA3Spec, LoRATarget, NonLinearity, method_of
from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec

torch.set_num_threads(1)

H, FFN, LAYERS = 128, 256, 2  # tiny (stepstone.backbone.TINY_SHAPE)


def test_defaults_and_sources():
    assert HoulsbySpec() == HoulsbySpec(reduction_factor=16, non_linearity=NonLinearity.SWISH)
    assert IA3Spec().target_modules == (LoRATarget.K, LoRATarget.V, LoRATarget.INTERMEDIATE)
    assert method_of("houlsby").family is Family.BOTTLENECK and method_of("ia3").family is Family.SCALING
    assert method_of("houlsby").sites(HoulsbySpec()) == ("after attention", "after the FFN")
    assert method_of("ia3").sites(IA3Spec()) == ("intermediate", "k", "v")
    assert TrainSpec().resolved("ia3").lr == 3e-3 and TrainSpec().resolved("houlsby").lr == 1e-4


def test_adapters_configs_are_the_libraries_defaults():
    from adapters import DoubleSeqBnConfig, IA3Config

    houlsby = methods.adapter_config(MethodSpec(kind="houlsby"))
    assert houlsby.to_dict() == DoubleSeqBnConfig().to_dict()
    assert (houlsby.mh_adapter, houlsby.output_adapter, houlsby.original_ln_before) == (True, True, False)
    ia3 = methods.adapter_config(MethodSpec(kind="ia3"))
    assert ia3.to_dict() == IA3Config().to_dict()
    assert (ia3.composition_mode, ia3.r, ia3.init_weights) == ("scale", 1, "ia3")
    picked = methods.adapter_config(MethodSpec(kind="ia3", ia3=IA3Spec(target_modules=(LoRATarget.Q, LoRATarget.OUTPUT))))
    assert (picked.attn_matrices, picked.selfattn_lora, picked.intermediate_lora, picked.output_lora) == (
        ["q"], True, False, True)
    ffn_only = methods.adapter_config(MethodSpec(kind="ia3", ia3=IA3Spec(target_modules=(LoRATarget.INTERMEDIATE,))))
    assert (ffn_only.selfattn_lora, ffn_only.intermediate_lora) == (False, True)


@pytest.mark.parametrize("data, problem", [
    ({"kind": "houlsby", "houlsby": {"reduction_factor": 0}}, "houlsby.reduction_factor must be >= 1"),
    ({"kind": "houlsby", "houlsby": {"non_linearity": "sigmoid"}},
     "'method.houlsby.non_linearity' must be one of: gelu, relu, swish, tanh (got 'sigmoid')"),
    ({"kind": "ia3", "ia3": {"target_modules": []}},
     "ia3.target_modules must name at least one of: q, k, v, intermediate, output"),
    ({"kind": "ia3", "ia3": {"r": 4}}, "unknown key 'method.ia3.r'"),
    ({"kind": "ia3", "houlsby": {"reduction_factor": 4}}, "method.houlsby settings are given, but method.kind is ia3"),
])
def test_bad_settings_are_refused(data, problem):
    with pytest.raises(ConfigError) as err:
        build(RunSpec, {"task": "toy-tags", "method": data})
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_check_fits_refuses_a_reduction_factor_above_the_hidden_size():
    config = load_backbone(BackboneSpec()).model.config
    methods.check_fits(MethodSpec(kind="houlsby", houlsby=HoulsbySpec(reduction_factor=H)), config)
    with pytest.raises(StepstoneError) as err:
        methods.check_fits(MethodSpec(kind="houlsby", houlsby=HoulsbySpec(reduction_factor=H + 1)), config)
    assert str(err.value) == (
        "method.houlsby.reduction_factor is 129, larger than the backbone's hidden size 128: both bottlenecks (hidden "
        "size / reduction factor) would have no units; use a reduction factor of at most 128")
    # (IA)^3 has no size setting: a vector per layer always has the layer's width, so nothing can misfit
    for targets in ((LoRATarget.Q,), tuple(LoRATarget)):
        methods.check_fits(MethodSpec(kind="ia3", ia3=IA3Spec(target_modules=targets)), config)


def adapter_parameters(spec: MethodSpec) -> dict[str, tuple[int, ...]]:
    model = load_backbone(BackboneSpec()).model
    methods.add_adapter(model, "x", spec)
    return {n: tuple(p.shape) for n, p in model.named_parameters() if methods.adapter_kind_of_parameter(n) is not None}


def test_houlsby_parameters_on_tiny():
    shapes = adapter_parameters(MethodSpec(kind="houlsby"))
    m = H // 16  # 8 units
    per_site = {"adapter_down.0.weight": (m, H), "adapter_down.0.bias": (m,), "adapter_up.weight": (H, m),
                "adapter_up.bias": (H,)}
    assert shapes == {f"roberta.encoder.layer.{i}.{site}.adapters.x.{k}": v for i in range(LAYERS)
                      for site in ("attention.output", "output") for k, v in per_site.items()}
    assert {methods.adapter_kind_of_parameter(n) for n in shapes} == {("adapters", "x")}
    # 2 layers x 2 sites x (down 128*8 + 8, up 8*128 + 128)
    assert sum(torch.Size(s).numel() for s in shapes.values()) == LAYERS * 2 * ((H * m + m) + (m * H + H)) == 8736


def test_ia3_parameters_on_tiny():
    shapes = adapter_parameters(MethodSpec(kind="ia3"))
    spots = {"attention.self.key": H, "attention.self.value": H, "intermediate.dense": FFN}
    assert shapes == {f"roberta.encoder.layer.{i}.{path}.loras.x.lora_B": (width, 1) for i in range(LAYERS)
                      for path, width in spots.items()}
    assert {methods.adapter_kind_of_parameter(n) for n in shapes} == {("loras", "x")}
    assert sum(torch.Size(s).numel() for s in shapes.values()) == LAYERS * (H + H + FFN) == 1024


def test_a_fresh_ia3_adapter_is_the_identity():
    backbone = load_backbone(BackboneSpec())
    model = backbone.model
    batch = dict(backbone.tokenizer(["a b c", "d"], return_tensors="pt", padding=True))
    model.eval()
    with torch.no_grad():
        plain = model.base_model(**batch).last_hidden_state
        methods.add_adapter(model, "x", MethodSpec(kind="ia3"))
        model.eval()
        methods.activate(model, "x", None)
        scaled = model.base_model(**batch).last_hidden_state
    assert all(torch.equal(p, torch.ones_like(p)) for n, p in model.named_parameters() if ".loras.x." in n)
    assert torch.equal(plain, scaled)
