"""The methods added to prove the registry (issue 14), end to end on `tiny`: houlsby and ia3 adapters train,
save to the zoo, reload to bit-identical outputs, their manifests round-trip, `integrity.check_artifact` and the
strict loader accept them; the supported compositions train and reload too; PEFT export refuses them."""
from __future__ import annotations

import json
import re
from contextlib import contextmanager

import pytest
import torch

from stepstone import pipelines
from stepstone.pipelines import train as train_steps
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.integrity import check_artifact
from stepstone.interop import export_adapter
from stepstone.manifest import Manifest, read_manifest
from stepstone.specs import Block, Composition, MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import get_task
from stepstone.toy import generate
from stepstone.zoo import Zoo

torch.set_num_threads(1)

TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=1e-3, select_best=False)
HB, IA3, BN = MethodSpec(kind="houlsby"), MethodSpec(kind="ia3"), MethodSpec(kind="bottleneck")
ADAPTER_PARAMS = {"houlsby": 8736, "ia3": 1024, "bottleneck": 4368}  # tests/unit/test_new_method_modules.py computes them
CASES = {  # trained in this order (members first)
    "hb": dict(task="toy-sentiment", method=HB),
    "hb2": dict(task="toy-pair", method=HB),
    "ia3": dict(task="toy-tags", method=IA3),
    "hb-stack": dict(task="toy-tags", method=BN, compose=Composition(Block.STACK, ("hb",))),
    "hb-fuse": dict(task="toy-tags", method=HB, compose=Composition(Block.FUSE, ("hb", "hb2"))),
    "ia3-stack": dict(task="toy-sentiment", method=IA3, compose=Composition(Block.STACK, ("ia3",))),
    "ia3-under-bn": dict(task="toy-sentiment", method=BN, compose=Composition(Block.STACK, ("ia3",))),
    "hb-under-ia3": dict(task="toy-sentiment", method=IA3, compose=Composition(Block.STACK, ("hb",))),
}


@contextmanager
def keep_trained_model():
    seen: dict = {}
    real = train_steps.train

    def spy(model, *args, **kwargs):
        seen["model"] = model
        return real(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_steps, "train", spy)
        yield seen


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("new-methods")
    zoo, done = Zoo(root / "zoo"), {}
    for name, kwargs in CASES.items():
        with keep_trained_model() as seen:
            outcome = pipelines.train_run(RunSpec(name=name, train=TRAIN, **kwargs), zoo=zoo, runs_dir=root / "runs")
        done[name] = (outcome, seen["model"])
    return zoo, done


def batch_for(task_name: str, tokenizer) -> dict[str, torch.Tensor]:
    task = get_task(task_name)
    handler = handler_for(task)
    rows = handler.encode(generate(task_name, "validation", "xa", n=8), tokenizer, task, 128, 64, train=False)
    batch = handler.collate(rows, tokenizer)
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


@pytest.mark.parametrize("name", list(CASES))
def test_reload_gives_identical_outputs_and_parameters(trained, name):
    _, done = trained
    outcome, model = done[name]
    backbone, manifest, task = pipelines.load_for_inference(outcome.path)
    assert manifest == outcome.manifest and task.name == CASES[name]["task"]
    inputs = batch_for(task.name, backbone.tokenizer)
    with torch.no_grad():
        before, after = model(**inputs).logits, backbone.model(**inputs).logits
    assert torch.equal(before, after)
    trained_params, reloaded = dict(model.named_parameters()), dict(backbone.model.named_parameters())
    assert trained_params.keys() == reloaded.keys()
    assert all(torch.equal(trained_params[k], reloaded[k]) for k in trained_params)


@pytest.mark.parametrize("name", list(CASES))
def test_manifest_round_trips_and_check_artifact_accepts_it(trained, name):
    outcome, _ = trained[1][name]
    raw = json.loads((outcome.path / "manifest.json").read_text(encoding="utf-8"))
    manifest = Manifest.from_json(raw, "x")
    assert manifest.to_json() == raw and read_manifest(outcome.path).to_json() == raw
    assert manifest.method.to_json() == raw["method"] == {
        "kind": CASES[name]["method"].kind, "settings": CASES[name]["method"].settings()}
    check_artifact(outcome.path, manifest)


@pytest.mark.parametrize("name", ["hb", "hb2", "ia3", "hb-stack", "ia3-stack", "ia3-under-bn", "hb-under-ia3"])
def test_trainable_count_is_the_adapter_plus_its_head(trained, name):
    outcome, model = trained[1][name]
    head = sum(p.numel() for n, p in model.named_parameters() if n.startswith(f"heads.{name}."))
    assert head > 0
    assert outcome.manifest.trainable.parameters == ADAPTER_PARAMS[CASES[name]["method"].kind] + head


def test_zoo_entries_hold_the_methods_settings(trained):
    zoo, _ = trained
    assert zoo.get("hb").manifest.method.to_json() == {"kind": "houlsby",
                                                       "settings": {"reduction_factor": 16, "non_linearity": "swish"}}
    assert zoo.get("ia3").manifest.method.to_json() == {"kind": "ia3",
                                                        "settings": {"target_modules": ["k", "v", "intermediate"]}}
    config = json.loads((zoo.path("ia3") / "adapter_config.json").read_text())["config"]
    assert (config["architecture"], config["composition_mode"]) == ("lora", "scale")


@pytest.mark.parametrize("name, why", [
    ("hb", "PEFT has no bottleneck adapters"),
    ("ia3", "stepstone maps only LoRA adapters to PEFT's format"),
])
def test_peft_export_refuses_them(trained, tmp_path, name, why):
    zoo, _ = trained
    kind = CASES[name]["method"].kind
    with pytest.raises(StepstoneError, match="^" + re.escape(
            f"cannot export '{name}' to PEFT: it is a {kind} adapter and {why}; only LoRA entries export") + "$"):
        export_adapter(name, tmp_path / "out", zoo=zoo)
    assert not (tmp_path / "out").exists()


def test_a_refused_composition_is_refused_before_training(trained, tmp_path):
    zoo, _ = trained
    spec = RunSpec(name="mixed", task="toy-tags", method=MethodSpec(kind="lora"), train=TRAIN,
                   compose=Composition(Block.STACK, ("ia3",)))
    with pytest.raises(StepstoneError, match=r"^a Stack cannot hold \(IA\)\^3 and LoRA adapters together"):
        pipelines.train_run(spec, zoo=zoo, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
