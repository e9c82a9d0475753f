"""Adapter methods as registered modules: the registry, each method's settings round trip, the
config form of MethodSpec, and no side effects at import."""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import warnings
from typing import Annotated

import pytest

from stepstone.config import ConfigError, build, to_dict
from stepstone.errors import StepstoneError
from stepstone.methods import (METHODS, BottleneckSpec, Family, HoulsbySpec, IA3Spec, LoRASpec, LoRATarget, Method,
                               NonLinearity, method_of)
from stepstone.registry import Registry
from stepstone.specs import MethodSpec, RunSpec, TrainSpec


def test_registry_holds_each_method_once_with_its_family():
    assert list(METHODS) == ["bottleneck", "full", "houlsby", "ia3", "lora"]
    assert {name: m.family for name, m in METHODS.items()} == {
        "bottleneck": Family.BOTTLENECK, "full": Family.FULL, "houlsby": Family.BOTTLENECK, "ia3": Family.SCALING,
        "lora": Family.LORA}
    assert {name: m.owners for name, m in METHODS.items()} == {
        "bottleneck": ("adapters",), "full": (), "houlsby": ("adapters",), "ia3": ("loras",), "lora": ("loras",)}
    assert {name: m.default_lr for name, m in METHODS.items()} == {"bottleneck": 1e-4, "full": 1e-5, "houlsby": 1e-4,
                                                                   "ia3": 3e-3, "lora": 1e-4}
    assert [name for name, m in METHODS.items() if m.composes] == ["bottleneck", "houlsby", "ia3", "lora"]


def test_unknown_method_lists_the_choices():
    with pytest.raises(StepstoneError) as err:
        method_of("lorra")
    assert str(err.value) == "unknown method 'lorra' (valid: bottleneck, full, houlsby, ia3, lora), did you mean 'lora'?"
    with pytest.raises(StepstoneError) as err:
        MethodSpec(kind="adapter")
    assert str(err.value) == "unknown method 'adapter' (valid: bottleneck, full, houlsby, ia3, lora)"


def test_unknown_kind_in_a_config_keeps_the_enum_message():
    with pytest.raises(ConfigError) as err:
        build(RunSpec, {"task": "toy-tags", "method": {"kind": "lorra"}}, source="run.yaml",
              lines={("method", "kind"): 3})
    assert err.value.problems == ["run.yaml:3: 'method.kind' must be one of: bottleneck, full, houlsby, ia3, lora (got 'lorra')"]
    assert build(MethodSpec, {"kind": "LoRA"}).kind == "lora"  # case-insensitive, as the enum was


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="method 'lora' is already registered"):
        METHODS.register("lora", METHODS.get("lora"))


def test_method_record_is_validated():
    with pytest.raises(ValueError, match="an adapter config is needed exactly when it adds an adapter"):
        Method(name="x", family=Family.LORA, settings=LoRASpec, adapter_config=None, owners=("loras",), default_lr=1e-4)
    with pytest.raises(ValueError, match="settings must be a dataclass type"):
        Method(name="x", family=Family.FULL, settings=dict, adapter_config=None, owners=(), default_lr=1e-4)
    with pytest.raises(ValueError, match="default_lr must be > 0"):
        Method(name="x", family=Family.FULL, settings=None, adapter_config=None, owners=(), default_lr=0.0)


NON_DEFAULT = {"bottleneck": BottleneckSpec(reduction_factor=4), "lora": LoRASpec(r=4, target_modules=(LoRATarget.K,)),
               "houlsby": HoulsbySpec(reduction_factor=8, non_linearity=NonLinearity.RELU),
               "ia3": IA3Spec(target_modules=(LoRATarget.V, LoRATarget.OUTPUT))}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_round_trips_through_to_dict_and_build(name):
    method = method_of(name)
    for settings in (method.default_settings(), NON_DEFAULT.get(name)):
        spec = MethodSpec(kind=name, **({name: settings} if settings is not None else {}))
        data = to_dict(spec)
        expected = {"kind": name} if method.settings is None else {"kind": name, name: to_dict(settings)}
        assert data == expected
        assert build(MethodSpec, json.loads(json.dumps(data))) == spec
        assert spec.options == settings and spec.settings() == ({} if settings is None else to_dict(settings))
        assert spec.registered is method


def test_other_methods_default_blocks_are_accepted_and_dropped():
    """Old config.yaml files repeat every method's block at its defaults."""
    old = {"kind": "lora", "bottleneck": {"reduction_factor": 16, "non_linearity": "relu"},
           "lora": {"r": 4, "alpha": 16, "dropout": 0.0, "target_modules": ["q", "v"]}}
    spec = build(MethodSpec, old)
    assert spec == MethodSpec(kind="lora", lora=LoRASpec(r=4))
    assert to_dict(spec) == {"kind": "lora", "lora": {"r": 4, "alpha": 16, "dropout": 0.0, "target_modules": ["q", "v"]}}
    assert to_dict(build(MethodSpec, {"kind": "full", "bottleneck": {}, "lora": {}})) == {"kind": "full"}
    assert to_dict(RunSpec(task="toy-tags"))["method"] == {
        "kind": "bottleneck", "bottleneck": {"reduction_factor": 16, "non_linearity": "relu"}}


def test_settings_of_another_method_keep_their_error():
    with pytest.raises(ConfigError) as err:
        build(MethodSpec, {"kind": "lora", "bottleneck": {"reduction_factor": 4}}, source="<command line>",
              prefix=("method",))
    assert err.value.problems == ["<command line>: 'method': method.bottleneck settings are given, but method.kind "
                                  "is lora, which does not use them: set method.kind to bottleneck, or drop them"]


def test_spec_has_one_block_per_method_with_settings():
    assert [f.name for f in dataclasses.fields(MethodSpec)] == ["kind", "bottleneck", "houlsby", "ia3", "lora"]
    assert MethodSpec(kind="full").options is None and MethodSpec(kind="lora").bottleneck == BottleneckSpec()


def test_default_lr_comes_from_the_method():
    assert [TrainSpec().resolved(name).lr for name in ("bottleneck", "lora", "full")] == [1e-4, 1e-4, 1e-5]
    assert TrainSpec(lr=3e-3).resolved("full").lr == 3e-3


def test_importing_methods_changes_no_logger_level_and_no_warnings_filter():
    probe = ("import logging, warnings\n"
             "names = ('adapters', 'bitsandbytes.backends.cpu')\n"
             "before = ([logging.getLogger(n).level for n in names], list(warnings.filters))\n"
             "import stepstone.methods, stepstone.specs, stepstone.composition, stepstone.config\n"
             "after = ([logging.getLogger(n).level for n in names], list(warnings.filters))\n"
             "assert before == after, (before, after)\n"
             "assert before[0] == [logging.NOTSET, logging.NOTSET]\n"
             "import sys; assert 'adapters' not in sys.modules and 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_building_a_model_quiets_the_libraries():
    from stepstone.backbone import load_backbone
    from stepstone.specs import BackboneSpec

    load_backbone(BackboneSpec("tiny"))
    assert logging.getLogger("adapters").level == logging.ERROR
    assert logging.getLogger("bitsandbytes.backends.cpu").level == logging.ERROR
    matmul = [f for f in warnings.filters if f[1] is not None and f[1].pattern.startswith("MatMul8bitLt")]
    assert len(matmul) == 1 and matmul[0][0] == "ignore"
    load_backbone(BackboneSpec("tiny"))  # idempotent: the filter is not added twice
    assert len([f for f in warnings.filters if f[1] is not None and f[1].pattern.startswith("MatMul8bitLt")]) == 1


COLOURS: Registry[int] = Registry("colour")
COLOURS.register("red", 1)


@dataclasses.dataclass(frozen=True)
class Paint:
    colour: Annotated[str, COLOURS] = "red"


def test_config_builder_checks_registered_names():
    assert build(Paint, {"colour": "RED"}) == Paint("red")
    with pytest.raises(ConfigError) as err:
        build(Paint, {"colour": "blue"})
    assert err.value.problems == ["<config>: 'colour' must be one of: red (got 'blue')"]
