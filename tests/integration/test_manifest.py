"""Typed manifests (stepstone.manifest): what is saved comes back field for field, bad manifests are one line
naming the file and the field, old formats migrate in memory only, one run-folder layout, and the backbone an
artifact was trained with (attention, quantisation) is the one it is evaluated with."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from stepstone.errors import StepstoneError
from stepstone.interop import export_adapter, import_adapter
from stepstone.manifest import (FORMAT_VERSION, ArtifactLayout, BackboneRecord, Kind, Manifest, migrate,
                                read_manifest)
from stepstone.pipelines import load_for_inference, load_run_spec, train_run
from stepstone.specs import Attention, BackboneSpec, Block, Composition, MethodSpec, Quantize, RunSpec, TrainSpec
from stepstone.zoo import Zoo

torch.set_num_threads(1)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "weights_only_manifest"
TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=1e-3, select_best=False)
BN, LORA, FULL = (MethodSpec(kind=k) for k in ("bottleneck", "lora", "full"))
CASES = {
    "bn": dict(task="toy-sentiment", method=BN),
    "lora": dict(task="toy-pair", method=LORA),
    "multi": dict(task=("toy-sentiment", "toy-tags"), method=BN),
    "fuse": dict(task="toy-tags", method=BN, compose=Composition(Block.FUSE, ("bn", "multi"))),
    "stack": dict(task="toy-tags", method=LORA, compose=Composition(Block.STACK, ("lora",))),
    "full": dict(task="toy-sentiment", method=FULL),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("manifest")
    zoo = Zoo(root / "zoo")
    paths = {name: train_run(RunSpec(name=name, train=TRAIN, **kw), zoo=zoo, runs_dir=root / "runs").path
             for name, kw in CASES.items()}
    export_adapter("lora", root / "peft", "peft", zoo=zoo)
    paths["imported"] = import_adapter(root / "peft", "imported", "peft", zoo=zoo).entry.path
    (root / "peft" / "stepstone_manifest.json").unlink()  # a plain PEFT folder: a head-less entry
    paths["headless"] = import_adapter(root / "peft", "headless", "peft", zoo=zoo, backbone="tiny").entry.path
    return paths


def saved(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", [*CASES, "imported", "headless"])
def test_every_saved_manifest_round_trips_and_its_records_hold_every_field(trained, name):
    raw = saved(trained[name])
    manifest = Manifest.from_json(raw, "x")
    assert manifest.to_json() == raw and dict(manifest) == raw and manifest == raw
    assert read_manifest(trained[name]).to_json() == raw
    # the records alone rebuild the JSON (nothing saved is left untyped)
    assert manifest.backbone.to_json() == raw["backbone"] and manifest.method.to_json() == raw["method"]
    assert manifest.task.to_json() == raw["task"] and [t.to_json() for t in manifest.tasks] == raw["tasks"]
    assert (manifest.composition.to_json() if manifest.composition else None) == raw["composition"]
    assert manifest.metrics.to_json() == raw["metrics"] and manifest.trainable.to_json() == raw["trainable"]
    assert (manifest.data.to_json() if manifest.data else None) == raw["data"]
    assert manifest.format_version == raw["format_version"] == FORMAT_VERSION
    assert list(manifest.history) == raw["history"] and manifest.files == raw["files"]


def test_typed_fields(trained):
    run = read_manifest(trained["fuse"])
    assert (run.kind, run.mode, run.method.kind) == (Kind.RUN, "fusion", "bottleneck")
    assert run.composition.block is Block.FUSE and run.composition.members == ("bn", "multi")
    assert run.composition.composition() == Composition(Block.FUSE, ("bn", "multi"))
    assert {k: v.kind for k, v in run.composition.member_methods.items()} == {"bn": "bottleneck",
                                                                               "multi": "bottleneck"}
    assert run.task.registered().name == "toy-tags" and run.task.head == "fuse"
    multi = read_manifest(trained["multi"])
    assert [(t.name, t.head) for t in multi.tasks] == [("toy-sentiment", "multi"), ("toy-tags", "multi_toy-tags")]
    assert set(multi.metrics.dev_by_task) == {"toy-sentiment", "toy-tags"}
    assert multi.data.by_task is not None and multi.metrics.main_dev == multi.metrics.dev["accuracy"]
    headless = read_manifest(trained["headless"])
    assert headless.tasks == () and headless.task.name == "-" and headless.imported["heads"] is False
    assert headless.learning is None and headless.processes is None and "learning" not in headless


def test_the_mapping_is_read_only(trained):
    manifest = read_manifest(trained["bn"])
    manifest["metrics"]["dev"]["accuracy"] = -1.0  # a copy
    assert manifest["metrics"]["dev"]["accuracy"] == manifest.metrics.dev["accuracy"] != -1.0
    with pytest.raises(TypeError):
        manifest["name"] = "other"  # type: ignore[index]


def test_one_layout_names_every_part_of_a_run(trained):
    fuse, full, multi = (ArtifactLayout(trained[n]) for n in ("fuse", "full", "multi"))
    for path in (fuse.manifest, fuse.config, fuse.train_log, fuse.target / "adapter_config.json",
                 fuse.member("bn") / "manifest.json", fuse.member("multi") / "adapter.safetensors",
                 fuse.fusion / "adapter_fusion_config.json", full.full_weights, multi.head("toy-tags") / "head_config.json"):
        assert path.is_file(), path
    assert fuse.outputs == trained["fuse"] / "evaluations" and fuse.members == trained["fuse"] / "members"
    files = set(read_manifest(trained["fuse"]).files)
    assert {str(p.relative_to(fuse.path)) for p in (fuse.config, fuse.train_log)} <= files


# ---------------------------------------------------------------------------------------------- validation
def fixture_manifest(folder: str = "zoo/old-tags") -> dict:
    return json.loads((FIXTURE / folder / "manifest.json").read_text())


def edited(change) -> dict:
    raw = fixture_manifest()
    change(raw)
    return raw


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("format_version"), "m.json: no integer 'format_version': not a stepstone manifest"),
    (lambda m: m.update(format_version=3),
     "m.json: format version 3 is newer than this stepstone understands (2); upgrade stepstone"),
    (lambda m: m["backbone"].pop("name"), "m.json: not a valid manifest: 'backbone.name' is missing"),
    (lambda m: m.update(kind="model"), "m.json: not a valid manifest: 'kind' must be one of adapter, run, got 'model'"),
    (lambda m: m.update(tasks={}), "m.json: not a valid manifest: 'tasks' must be a list, got {}"),
    (lambda m: m["backbone"].update(quantize="2bit"),
     "m.json: not a valid manifest: 'backbone.quantize' must be one of none, 8bit, 4bit, got \"2bit\""),
    (lambda m: m["backbone"].update(attention="flash"),
     "m.json: not a valid manifest: 'backbone.attention' must be one of sdpa, eager, got \"flash\""),
    (lambda m: m.update(metrics=[]), "m.json: not a valid manifest: 'metrics' must be an object, got []"),
    (lambda m: m["trainable"].pop("parameters"), "m.json: not a valid manifest: 'trainable.parameters' is missing"),
    (lambda m: m.update(name="../x"),
     "m.json: invalid name '../x' in 'name': use 1-64 letters, digits, '-' or '_', starting with a letter or digit"),
], ids=["no-version", "newer", "missing", "choice", "type", "quantize", "attention", "metrics", "trainable", "name"])
def test_a_bad_manifest_is_one_line_naming_the_file_and_the_field(change, message):
    with pytest.raises(StepstoneError) as err:
        Manifest.from_json(edited(change), "m.json")
    assert str(err.value) == message


def test_a_member_method_record_without_a_kind_is_named():
    raw = fixture_manifest("run/old-stack")
    raw["composition"]["member_methods"]["old-tags"] = {"settings": {}}
    with pytest.raises(StepstoneError) as err:
        Manifest.from_json(raw, "m.json")
    assert str(err.value) == ("m.json: not a valid manifest: 'composition.member_methods' must be an object of "
                              "method records, got {\"old-tags\": {\"settings\": {}}}")


# ---------------------------------------------------------------------------------------------- migration
BOTTLENECK_64 = {"kind": "bottleneck", "bottleneck": {"non_linearity": "relu", "reduction_factor": 64}}


@pytest.mark.parametrize("folder", ["zoo/old-tags", "run/old-stack", "run/old-stack/members/old-tags"])
def test_format_1_manifests_migrate_to_2_in_memory(folder):
    raw = fixture_manifest(folder)
    assert raw["format_version"] == 1 and set(raw["spec"]["method"]) == {"kind", "bottleneck", "lora"}
    expected = copy.deepcopy(raw)
    expected["format_version"] = 2
    expected["spec"]["method"] = BOTTLENECK_64  # only the kind's own block
    manifest = Manifest.from_json(raw, folder)
    assert migrate(raw) == manifest.to_json() == expected
    assert manifest.format_version == manifest["format_version"] == 1 and dict(manifest) == raw  # as saved
    assert manifest.spec["method"] == BOTTLENECK_64
    assert json.loads((FIXTURE / folder / "manifest.json").read_text()) == raw  # never rewritten


def test_format_1_without_quantize_and_attention_reads_their_defaults():
    raw = fixture_manifest()
    del raw["backbone"]["quantize"], raw["backbone"]["attention"]
    migrated = migrate(raw)
    assert migrated["backbone"] == {**raw["backbone"], "quantize": "none", "attention": "sdpa"}
    record = Manifest.from_json(raw, "m.json").backbone
    assert record.spec() == BackboneRecord("tiny", "7f0d64f77e6ff518").spec()
    assert (record.quantize, record.attention) == (Quantize.NONE, Attention.SDPA)


def test_a_full_and_a_lora_spec_keep_only_their_own_block():
    raw = fixture_manifest()
    for kind, expected in (("lora", {"kind": "lora", "lora": raw["spec"]["method"]["lora"]}), ("full", {"kind": "full"})):
        changed = copy.deepcopy(raw)
        changed["spec"]["method"]["kind"] = kind
        assert migrate(changed)["spec"]["method"] == expected


# ---------------------------------------------------------------------------------------------- backbone spec
def test_the_backbone_spec_keeps_revision_quantize_and_attention():
    record = BackboneRecord("some/model", "f" * 16, "abc123", Quantize.INT8, Attention.EAGER,
                            source={"local": "/models/x"})
    assert record.spec() == BackboneSpec("some/model", "abc123", Quantize.INT8, Attention.EAGER)
    assert record.spec(record.location()).name == "/models/x"


def test_a_run_trained_with_eager_attention_is_evaluated_with_it(tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    spec = load_run_spec(None, {"task": ["toy-pair"], "method": {"kind": "lora"}, "name": "eager-lora"},
                         ["backbone.attention=eager", "train.epochs=1", "train.max_train_examples=16",
                          "train.max_eval_examples=8"])
    entry = train_run(spec, zoo=zoo, runs_dir=tmp_path / "runs")
    assert entry.manifest.backbone.attention is Attention.EAGER
    stack = train_run(load_run_spec(None, {"task": ["toy-tags"], "name": "on-eager", "compose":
                                           {"block": "stack", "members": ["eager-lora"]}},
                                    ["backbone.attention=eager", "train.epochs=1", "train.max_train_examples=16",
                                     "train.max_eval_examples=8"],
                                    zoo=zoo), zoo=zoo, runs_dir=tmp_path / "runs")
    for path in (entry.path, stack.path):
        backbone, manifest, _ = load_for_inference(path)
        assert manifest.backbone.attention is Attention.EAGER
        assert backbone.spec.attention is Attention.EAGER and backbone.model.config._attn_implementation == "eager"
    export_adapter("eager-lora", tmp_path / "peft", "peft", zoo=zoo)  # and back through PEFT
    imported = import_adapter(tmp_path / "peft", "eager-again", "peft", zoo=zoo)
    assert imported.entry.manifest.backbone.attention is Attention.EAGER
    assert load_for_inference(imported.entry.path)[0].model.config._attn_implementation == "eager"



def test_a_quantised_entry_comes_back_quantised_from_its_manifest_and_through_peft(tmp_path):
    from bitsandbytes.nn import Linear8bitLt

    zoo = Zoo(tmp_path / "zoo")
    spec = load_run_spec(None, {"task": ["toy-pair"], "method": {"kind": "lora"}, "name": "q-lora"},
                         ["backbone.quantize=8bit", "train.epochs=1", "train.max_train_examples=16",
                          "train.max_eval_examples=8"])
    train_run(spec, zoo=zoo, runs_dir=tmp_path / "runs")
    export_adapter("q-lora", tmp_path / "peft", "peft", zoo=zoo)
    imported = import_adapter(tmp_path / "peft", "q-again", "peft", zoo=zoo)
    for name in ("q-lora", "q-again"):
        backbone, manifest, _ = load_for_inference(zoo.path(name))
        assert manifest.backbone.quantize is Quantize.INT8 and backbone.spec == manifest.backbone.spec()
        assert isinstance(backbone.model.roberta.encoder.layer[0].output.dense, Linear8bitLt)
    assert imported.entry.manifest.spec["backbone"]["quantize"] == "8bit"
