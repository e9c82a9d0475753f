"""Artifacts on disk: save -> load gives bit-identical outputs for every method and head type, the exact file
layout and manifest of zoo entries and runs, refusal of foreign / corrupted / future artifacts, and the zoo."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepstone import pipelines
from stepstone.pipelines import train as train_steps
from stepstone.artifacts import library_versions
from stepstone.manifest import FORMAT_VERSION, read_manifest
from stepstone.backbone import load_backbone
from stepstone.config import build, load_yaml, to_dict
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.specs import BackboneSpec, Block, Composition, MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import get_task
from stepstone.toy import generate
from stepstone.zoo import Zoo

torch.set_num_threads(1)

TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=1e-3, select_best=False)
BN = MethodSpec(kind="bottleneck")
LORA = MethodSpec(kind="lora")
FULL = MethodSpec(kind="full")

ZOO_FILES = {"adapter.safetensors", "adapter_config.json", "head_config.json", "model_head.safetensors",
             "manifest.json", "config.yaml", "train_log.jsonl"}
TARGET_FILES = {"adapter.safetensors", "adapter_config.json", "head_config.json", "model_head.safetensors"}
FUSION_FILES = {"adapter_fusion_config.json", "model_adapter_fusion.safetensors"}
MANIFEST_KEYS = {"backbone", "composition", "created", "data", "files", "format_version", "history", "init_from",
                 "kind", "learning", "method", "metrics", "mode", "name", "peak_rss_mb", "processes", "seed", "spec",
                 "task", "tasks", "trainable", "train_seconds", "versions", "weights_bytes"}

# Trained in this order (members before the runs composing them). select_best=False: what is saved is exactly
# the model training left in memory.
CASES = {
    "bn-cls": dict(task="toy-sentiment", method=BN),
    "lora-cls": dict(task="toy-sentiment", method=LORA),
    "bn-tags": dict(task="toy-tags", method=BN),
    "bn-qa": dict(task="toy-qa", method=BN),
    "bn-choice": dict(task="toy-choice", method=BN),
    "lora-choice": dict(task="toy-choice", method=LORA),
    "fuse-run": dict(task="toy-pair", method=BN, compose=Composition(Block.FUSE, ("bn-cls", "bn-tags"))),
    "fuse-lora-run": dict(task="toy-qa", method=LORA, compose=Composition(Block.FUSE, ("bn-tags", "bn-cls"))),
    "stack-run": dict(task="toy-tags", method=BN, compose=Composition(Block.STACK, ("bn-cls", "bn-qa"))),
    "sum-run": dict(task="toy-pair", method=LORA, compose=Composition(Block.STACK, ("lora-cls", "lora-choice"))),
    "full-run": dict(task="toy-sentiment", method=FULL),
}
ZOO_NAMES = sorted(n for n, kw in CASES.items() if "compose" not in kw and kw["method"] is not FULL)


@contextmanager
def keep_trained_model():
    """Keep the model object training.train trained (train_run itself returns only an Outcome)."""
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
    root = tmp_path_factory.mktemp("artifacts")
    zoo, runs = Zoo(root / "zoo"), root / "runs"
    done = {}
    for name, kwargs in CASES.items():
        spec = RunSpec(name=name, train=TRAIN, **kwargs)
        with keep_trained_model() as seen:
            outcome = pipelines.train_run(spec, zoo=zoo, runs_dir=runs)
        done[name] = (spec, outcome, seen["model"])
    return zoo, runs, done


def batch_for(task_name: str, tokenizer) -> dict[str, torch.Tensor]:
    """Model inputs for 8 validation examples (in xa: zero-shot), padded, without labels."""
    task = get_task(task_name)
    handler = handler_for(task)
    rows = handler.encode(generate(task_name, "validation", "xa", n=8), tokenizer, task, 128, 64, train=False)
    batch = handler.collate(rows, tokenizer)
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def outputs(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------------------------------ save -> load
@pytest.mark.parametrize("name", list(CASES))
def test_reload_gives_identical_outputs(trained, name):
    _, _, done = trained
    spec, outcome, model = done[name]
    backbone, manifest, task = pipelines.load_for_inference(outcome.path)
    assert manifest == outcome.manifest and task.name == spec.task[0]
    inputs = batch_for(spec.task[0], backbone.tokenizer)
    before, after = outputs(model, inputs), outputs(backbone.model, inputs)
    expected_keys = {"start_logits", "end_logits"} if spec.task[0] == "toy-qa" else {"logits"}
    assert set(before) == set(after) == expected_keys
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert not backbone.model.training
    # the reloaded model carries exactly the trained parameters (nothing left out, nothing extra)
    trained_params = dict(model.named_parameters())
    reloaded = dict(backbone.model.named_parameters())
    assert trained_params.keys() == reloaded.keys()
    assert all(torch.equal(trained_params[k], reloaded[k]) for k in trained_params)


@pytest.mark.parametrize("name", list(CASES))
def test_evaluate_reproduces_the_dev_metrics(trained, tmp_path, name):
    zoo, _, done = trained
    spec, outcome, _ = done[name]
    target = name if name in ZOO_NAMES else str(outcome.path)  # zoo entries by name, runs by path
    report = tmp_path / "eval.json"
    evaluation = pipelines.evaluate(target, zoo=zoo, langs=["en"], split="validation", max_examples=16,
                                    output=report)
    assert evaluation.scores == {"en": outcome.manifest["metrics"]["dev"]}
    assert evaluation.path == outcome.path and evaluation.output == report
    assert evaluation.metric == outcome.manifest["metrics"]["main"]
    written = json.loads(report.read_text())
    assert written == {"artifact": name, "task": spec.task[0], "split": "validation", "metric": evaluation.metric,
                       "scores": {"en": outcome.manifest["metrics"]["dev"]}, "examples": {"en": 16}}
    assert not (outcome.path / "evaluations").exists()


def test_evaluate_default_output_inside_the_artifact(trained, tmp_path):
    zoo, _, done = trained
    copy = tmp_path / "bn-cls"
    shutil.copytree(done["bn-cls"][1].path, copy)
    evaluation = pipelines.evaluate(str(copy), zoo=zoo, langs=["xa", "xb"], split="test", max_examples=8)
    assert evaluation.output == copy / "evaluations" / "toy-sentiment.test.json"
    assert set(json.loads(evaluation.output.read_text())["scores"]) == {"xa", "xb"}
    with pytest.raises(StepstoneError, match=r"unknown split 'dev' \(valid: train, validation, test\)"):
        pipelines.evaluate(str(copy), zoo=zoo, split="dev")


# ---------------------------------------------------------------------------------------------- file layout
def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_entry_files(trained, name):
    zoo, _, done = trained
    path = done[name][1].path
    assert path == zoo.root / name
    assert listing(path) == ZOO_FILES
    # classification and multiple choice heads: dense + out (modules 1, 4); tagging and QA: one linear (1)
    layers = ("1",) if done[name][0].task[0] in ("toy-tags", "toy-qa") else ("1", "4")
    assert set(load_file(str(path / "model_head.safetensors"))) == {f"heads.{name}.{i}.{p}" for i in layers
                                                                    for p in ("weight", "bias")}
    if done[name][0].method.kind == "bottleneck":
        expected = {f"roberta.encoder.layer.{i}.output.adapters.{name}.{p}" for i in (0, 1) for p in
                    ("adapter_down.0.weight", "adapter_down.0.bias", "adapter_up.weight", "adapter_up.bias")}
    else:
        expected = {f"roberta.encoder.layer.{i}.attention.self.{m}.loras.{name}.lora_{ab}" for i in (0, 1)
                    for m in ("query", "value") for ab in "AB"}
    assert set(load_file(str(path / "adapter.safetensors"))) == expected
    assert json.loads((path / "adapter_config.json").read_text())["name"] == name


def test_zoo_and_runs_roots_hold_only_finished_artifacts(trained):
    zoo, runs, _ = trained
    assert listing(zoo.root) == set(ZOO_NAMES)
    assert zoo.names() == ZOO_NAMES
    assert listing(runs) == {n for n in CASES if n not in ZOO_NAMES}


def test_fuse_run_files(trained):
    _, runs, done = trained
    path = done["fuse-run"][1].path
    assert path == runs / "fuse-run"
    assert listing(path) == {"target", "members", "fusion", "manifest.json", "config.yaml", "train_log.jsonl"}
    assert listing(path / "target") == TARGET_FILES
    assert listing(path / "members") == {"bn-cls", "bn-tags"}
    for member in ("bn-cls", "bn-tags"):
        assert listing(path / "members" / member) == ZOO_FILES
        for file in ZOO_FILES:  # an exact copy of the zoo entry
            assert (path / "members" / member / file).read_bytes() == (done[member][1].path / file).read_bytes()
    assert listing(path / "fusion") == FUSION_FILES
    fusion = json.loads((path / "fusion" / "adapter_fusion_config.json").read_text())
    assert fusion["name"] == "bn-cls,bn-tags" and fusion["adapter_names"] == ["bn-cls", "bn-tags"]


def test_stack_and_full_run_files(trained):
    _, _, done = trained
    stack = done["stack-run"][1].path
    assert listing(stack) == {"target", "members", "manifest.json", "config.yaml", "train_log.jsonl"}
    assert listing(stack / "members") == {"bn-cls", "bn-qa"}
    full = done["full-run"][1].path
    assert listing(full) == {pipelines.FULL_WEIGHTS, "manifest.json", "config.yaml", "train_log.jsonl"}
    weights = set(load_file(str(full / pipelines.FULL_WEIGHTS)))
    heads = {f"heads.full-run.{p}" for p in ("1.weight", "1.bias", "4.weight", "4.bias")}
    assert weights == {n for n, _ in load_backbone(BackboneSpec()).model.named_parameters()} | heads


# ------------------------------------------------------------------------------------------------- manifest
def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["bn-cls", "lora-cls", "bn-qa", "fuse-run", "sum-run", "full-run"])
def test_manifest(trained, name):
    _, _, done = trained
    spec, outcome, _ = done[name]
    text = (outcome.path / "manifest.json").read_text(encoding="utf-8")
    manifest = json.loads(text)
    assert text == json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert list(manifest) == sorted(manifest) == sorted(MANIFEST_KEYS)
    assert manifest == outcome.manifest
    task = get_task(spec.task[0])
    resolved = replace(spec, train=spec.train.resolved(spec.method.kind))
    standalone = name in ZOO_NAMES
    assert manifest["name"] == name
    assert manifest["kind"] == ("adapter" if standalone else "run")
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["backbone"] == {"name": "tiny", "revision": None, "parameters": 402816, "quantize": "none",
                                    "attention": "sdpa", "fingerprint": load_backbone(BackboneSpec()).fingerprint}
    assert manifest["method"] == {"kind": spec.method.kind, "settings": spec.method.settings()}
    assert manifest["task"] == {"name": spec.task[0], "format": task.format.value, "labels": list(task.labels),
                                "num_choices": task.num_choices, "train_language": "en", "head": name}
    assert manifest["tasks"] == [manifest["task"]]
    assert manifest["spec"] == to_dict(resolved)
    assert manifest["spec"]["train"]["lr"] == 1e-3 and manifest["spec"]["train"]["fusion_lr"] == 5e-5
    assert manifest["seed"] == 0
    features = manifest["data"]["train_features"]
    assert manifest["data"] == {"train_examples": 32, "train_features": features, "dev_examples": 16}
    if task.format.value == "qa":
        assert features >= 32  # long contexts may give several windows
    else:
        assert features == 32
    assert manifest["metrics"] == {"dev": outcome.result.dev_metrics, "best_epoch": 1, "main": task.metric.main}
    assert manifest["history"][-1]["dev"] == manifest["metrics"]["dev"] and len(manifest["history"]) == 1
    assert manifest["versions"] == library_versions()
    assert manifest["versions"]["adapters"] == "1.3.0"
    weights = sorted(outcome.path.rglob("*.safetensors"))
    # every file of the artifact is hashed (weights, configs, the log, member copies' manifests), not manifest.json
    files = sorted(p for p in outcome.path.rglob("*") if p.is_file() and p != outcome.path / "manifest.json")
    assert weights and manifest["files"] == {str(p.relative_to(outcome.path)): sha(p) for p in files}
    assert {"config.yaml", "train_log.jsonl"} <= {p.name for p in files}
    assert manifest["weights_bytes"] == sum(p.stat().st_size for p in weights)
    # config.yaml is the resolved spec, loadable as a RunSpec
    data, _ = load_yaml(outcome.path / "config.yaml")
    assert build(RunSpec, data) == resolved


def test_manifest_composition_and_init_records(trained):
    _, _, done = trained
    fuse = done["fuse-run"][1].manifest
    assert fuse["composition"] == {
        "block": "fuse", "members": ["bn-cls", "bn-tags"], "semantics": "fusion",
        "setup": "Fuse(bn-cls, bn-tags) + fuse-run",
        "member_methods": {m: done[m][1].manifest["method"] for m in ("bn-cls", "bn-tags")}}
    assert done["sum-run"][1].manifest["composition"]["setup"] == "Stack(lora-cls, lora-choice, sum-run)"
    assert done["sum-run"][1].manifest["composition"]["semantics"] == "sum"
    for name in ("bn-cls", "full-run"):
        assert done[name][1].manifest["composition"] is None and done[name][1].manifest["init_from"] is None
    assert [done[n][1].manifest["mode"] for n in ("bn-cls", "fuse-run", "stack-run", "full-run")] == \
        ["adapter", "fusion", "adapter", "full"]


# ------------------------------------------------------------------------------------------------ refusals
def copy_of(trained, name: str, tmp_path: Path) -> Path:
    destination = tmp_path / name
    shutil.copytree(trained[2][name][1].path, destination)
    return destination


def edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = value
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["bn-cls", "fuse-run", "full-run"])
def test_other_backbone_refused_naming_both(trained, tmp_path, name):
    path = copy_of(trained, name, tmp_path)
    real = load_backbone(BackboneSpec()).fingerprint
    edit_manifest(path, backbone__name="xlm-roberta-large", backbone__fingerprint="0123456789abcdef")
    with pytest.raises(StepstoneError) as err:
        pipelines.load_for_inference(path, backbone_name="tiny")
    assert str(err.value) == (f"'{name}' was trained on backbone 'xlm-roberta-large' (fingerprint "
                              f"0123456789abcdef), not on the loaded 'tiny' (fingerprint {real})")
    # same name, other weights: the fingerprint alone decides
    edit_manifest(path, backbone__name="tiny", backbone__fingerprint="fedcba9876543210")
    with pytest.raises(StepstoneError, match=f"fingerprint fedcba9876543210.*'tiny' \\(fingerprint {real}\\)"):
        pipelines.load_for_inference(path)


def test_members_from_another_backbone_refused(trained, tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    for name in ("bn-cls", "bn-tags"):
        shutil.copytree(trained[2][name][1].path, zoo.path(name))
    edit_manifest(zoo.path("bn-tags"), backbone__name="other", backbone__fingerprint="0123456789abcdef")
    real = load_backbone(BackboneSpec()).fingerprint
    spec = RunSpec(task="toy-pair", name="mixed", train=TRAIN, compose=Composition(Block.STACK, ("bn-cls", "bn-tags")))
    with pytest.raises(StepstoneError) as err:
        pipelines.train_run(spec, zoo=zoo, runs_dir=tmp_path / "runs")
    assert str(err.value) == (f"composition members come from different backbones: bn-cls: tiny ({real}), "
                              f"bn-tags: other (0123456789abcdef)")
    alone = replace(spec, compose=Composition(Block.STACK, ("bn-tags",)))
    with pytest.raises(StepstoneError, match=f"'bn-tags' was trained on backbone 'other'.*{real}"):
        pipelines.train_run(alone, zoo=zoo, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, file", [
    ("bn-cls", "adapter.safetensors"),
    ("bn-cls", "model_head.safetensors"),
    ("fuse-run", "members/bn-tags/adapter.safetensors"),
    ("fuse-run", "fusion/model_adapter_fusion.safetensors"),
    ("full-run", pipelines.FULL_WEIGHTS),
])
def test_corrupted_weights_refused(trained, tmp_path, name, file):
    path = copy_of(trained, name, tmp_path)
    flip_byte(path / file)
    with pytest.raises(StepstoneError) as err:
        pipelines.load_for_inference(path)
    assert str(err.value) == f"'{path}': weights file {file} is corrupted (sha256 mismatch)"
    (path / file).unlink()
    with pytest.raises(StepstoneError, match=f"weights file {file} is missing"):
        pipelines.load_for_inference(path)


def test_corrupted_zoo_entry_refused_by_get(trained, tmp_path):
    zoo = Zoo(tmp_path)
    shutil.copytree(trained[2]["bn-cls"][1].path, zoo.path("bn-cls"))
    flip_byte(zoo.path("bn-cls") / "adapter.safetensors", offset=200)
    with pytest.raises(StepstoneError, match="adapter.safetensors is corrupted"):
        zoo.get("bn-cls")
    assert zoo.get("bn-cls", verify=False).manifest["name"] == "bn-cls"


def test_newer_format_and_broken_manifests_refused(trained, tmp_path):
    path = copy_of(trained, "bn-cls", tmp_path)
    edit_manifest(path, format_version=99)
    with pytest.raises(StepstoneError, match=r"format version 99 is newer than this stepstone understands \(2\)"):
        pipelines.load_for_inference(path)
    edit_manifest(path, format_version="1")
    with pytest.raises(StepstoneError, match="no integer 'format_version'"):
        pipelines.load_for_inference(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(StepstoneError, match="not valid JSON"):
        pipelines.load_for_inference(path)
    (path / "manifest.json").write_text(json.dumps({"format_version": 1, "name": "x"}))
    with pytest.raises(StepstoneError, match="not a valid manifest: 'kind' is missing; 'mode' is missing; 'backbone' is "
                                             "missing; 'method' is missing; 'task' is missing; 'tasks' is missing; "
                                             "'spec' is missing; 'files' is missing$"):
        pipelines.load_for_inference(path)
    (path / "manifest.json").unlink()
    with pytest.raises(StepstoneError, match="is not a stepstone artifact: manifest.json is missing"):
        pipelines.load_for_inference(path)


def test_existing_destination_refused_before_training(trained):
    zoo, runs, done = trained
    spec, outcome, _ = done["bn-cls"]
    before = sha(outcome.path / "adapter.safetensors")
    with keep_trained_model() as seen:
        with pytest.raises(StepstoneError, match="already exists"):
            pipelines.train_run(spec, zoo=zoo, runs_dir=runs)
    assert seen == {} and sha(outcome.path / "adapter.safetensors") == before


# ------------------------------------------------------------------------------------------------------ zoo
@pytest.fixture
def small_zoo(trained, tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    for name in ("bn-tags", "bn-cls", "lora-cls"):
        shutil.copytree(trained[2][name][1].path, zoo.path(name))
    (zoo.root / "not-an-entry").mkdir()  # no manifest: ignored
    (zoo.root / ".bn-qa.tmp-abc123").mkdir()  # an unfinished save: ignored
    return zoo


def test_zoo_list_and_get(small_zoo):
    assert small_zoo.names() == ["bn-cls", "bn-tags", "lora-cls"]
    entries = small_zoo.entries()
    assert [e.name for e in entries] == small_zoo.names()
    assert [e.manifest["method"]["kind"] for e in entries] == ["bottleneck", "bottleneck", "lora"]
    entry = small_zoo.get("lora-cls")
    assert (entry.name, entry.path, entry.manifest["name"]) == ("lora-cls", small_zoo.root / "lora-cls", "lora-cls")
    assert Zoo(small_zoo.root / "absent").names() == []


def test_zoo_unknown_entry_lists_the_valid_ones(small_zoo):
    with pytest.raises(StepstoneError) as err:
        small_zoo.get("bn-nope")
    assert str(err.value) == f"no zoo entry 'bn-nope' in {small_zoo.root} (entries: bn-cls, bn-tags, lora-cls)"
    with pytest.raises(StepstoneError, match=r"no zoo entry 'not-an-entry' .*\(entries: bn-cls, bn-tags, lora-cls\)"):
        small_zoo.get("not-an-entry")
    with pytest.raises(StepstoneError, match=r"\(entries: none\)"):
        Zoo(small_zoo.root / "absent").get("x")


def test_zoo_remove(small_zoo):
    removed = small_zoo.remove("bn-tags")
    assert removed.name == "bn-tags" and removed.manifest["task"]["name"] == "toy-tags"
    assert small_zoo.names() == ["bn-cls", "lora-cls"]
    assert listing(small_zoo.root) == {"bn-cls", "lora-cls", "not-an-entry", ".bn-qa.tmp-abc123"}
    with pytest.raises(StepstoneError, match=r"no zoo entry 'bn-tags' .*\(entries: bn-cls, lora-cls\)"):
        small_zoo.remove("bn-tags")


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "a.b", "a,b", "", "-lead", "x" * 65])
def test_zoo_invalid_names_refused(small_zoo, bad):
    for call in (small_zoo.path, small_zoo.get, small_zoo.remove):
        with pytest.raises(StepstoneError, match="invalid zoo entry name"):
            call(bad)
    assert small_zoo.names() == ["bn-cls", "bn-tags", "lora-cls"]


def test_zoo_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STEPSTONE_ZOO", str(tmp_path / "elsewhere"))
    assert Zoo().root == tmp_path / "elsewhere"


def test_zoo_ignores_half_removed_entries(small_zoo):
    leftover = small_zoo.root / ".bn-qa.deleting-4242"
    shutil.copytree(small_zoo.path("bn-cls"), leftover)
    assert small_zoo.names() == ["bn-cls", "bn-tags", "lora-cls"]


@pytest.mark.parametrize("change, message", [
    (dict(kind="plugin"), "'kind' must be one of adapter, run, got 'plugin'"),
    (dict(backbone__fingerprint=7), "'backbone.fingerprint' must be a string, got 7"),
    (dict(method="lora"), "'method' must be an object, got str"),
    (dict(method__kind="prefix"), "'method.kind' must be one of bottleneck, lora, full, houlsby, ia3, got 'prefix'"),
    (dict(tasks={}), "'tasks' must be a list, got {}"),
    (dict(format_version=True), "no integer 'format_version'"),
    (dict(files={"../../outside.safetensors": "0" * 64}), "bad weights entry '../../outside.safetensors'"),
    (dict(files={"/etc/passwd": "0" * 64}), "bad weights entry '/etc/passwd'"),
    (dict(files={"adapter.safetensors": "not-a-hash"}), "bad weights entry 'adapter.safetensors'"),
    (dict(files={"adapter.bin": "0" * 64}), "bad weights entry 'adapter.bin'"),
], ids=["kind", "fingerprint-type", "method-type", "method-kind", "tasks-type", "bool-version", "traversal",
        "absolute", "hash", "not-safetensors"])
def test_manifests_are_checked_against_the_schema(trained, tmp_path, change, message):
    path = copy_of(trained, "bn-cls", tmp_path)
    edit_manifest(path, **change)
    with pytest.raises(StepstoneError, match=re.escape(message)):
        read_manifest(path, verify=False)


def test_a_folder_with_a_pickle_or_unverifiable_weights_is_never_loaded(trained, tmp_path):
    """adapters' load_adapter falls back to torch.load of pytorch_adapter.bin: such a folder is refused
    before any library sees it, and the pickle's payload never runs."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "pwned", "ran"))

    path = copy_of(trained, "bn-cls", tmp_path)
    (path / "pytorch_adapter.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(StepstoneError, match=r"holds pickle-format file\(s\) pytorch_adapter.bin: refusing to load it"):
        pipelines.load_for_inference(path)
    (path / "pytorch_adapter.bin").unlink()
    (path / "adapter.safetensors").unlink()  # only the pickle left, and the manifest edited to hide it
    (path / "pytorch_adapter.bin").write_bytes(pickle.dumps(Payload()))
    edit_manifest(path, files={})
    with pytest.raises(StepstoneError, match="holds pickle-format file"):
        pipelines.load_for_inference(path)
    assert not (tmp_path / "pwned").exists()
    (path / "pytorch_adapter.bin").unlink()
    shutil.copy(trained[2]["bn-cls"][1].path / "adapter.safetensors", path / "extra.safetensors")
    with pytest.raises(StepstoneError, match="weights file extra.safetensors is not in the manifest"):
        pipelines.load_for_inference(path)


def test_a_zoo_entry_answers_only_to_its_own_name(trained, tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    shutil.copytree(trained[2]["bn-cls"][1].path, zoo.root / "renamed")
    with pytest.raises(StepstoneError, match="zoo folder 'renamed' holds the entry 'bn-cls'"):
        zoo.get("renamed")
    for bad in ("../x", "/abs/path", "a/b", ".hidden", "x" * 65, ""):
        with pytest.raises(StepstoneError, match="invalid zoo entry name"):
            zoo.get(bad)


def test_truncated_weights_are_refused(trained, tmp_path):
    path = copy_of(trained, "bn-cls", tmp_path)
    weights = path / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(StepstoneError, match="adapter.safetensors is corrupted"):
        pipelines.load_for_inference(path)
