"""Sequential intermediate training (issue 16): an adapter run with init_from starts from a zoo adapter's weights
exactly, with a new head, trains them, records the chain, and reloads; every mismatched source is refused before
the backbone loads, with nothing written."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepstone import pipelines
from stepstone.backbone import TINY_SHAPE
from stepstone.errors import StepstoneError
from stepstone.manifest import read_manifest
from stepstone.pipelines import chains
from stepstone.pipelines import train as train_steps
from stepstone.specs import BackboneSpec, Block, Composition, MethodSpec, RunSpec, TrainSpec
from stepstone.zoo import Zoo
from test_training import spy_on_training  # the same spy as test_training's trained-zoo tests

torch.set_num_threads(1)

TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=1e-2)
H = TINY_SHAPE["hidden_size"]
ADAPTERS = ("bottleneck", "lora", "houlsby", "ia3")  # every adapter method the registry has (full is not one)


def own(tensors: dict, kind: str, name: str) -> dict:
    """The tensors of adapter `name` (not heads), keyed with the name taken out, so two adapters compare."""
    return {k.replace(f".{name}.", ".NAME."): v for k, v in tensors.items()
            if not k.startswith("heads.") and f".{name}." in k}


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One toy-sentiment adapter per adapter method, in one zoo."""
    root = tmp_path_factory.mktemp("chains")
    zoo = Zoo(root / "zoo")
    for kind in ADAPTERS:
        pipelines.train_run(RunSpec(task="toy-sentiment", name=f"{kind}-sent", method=MethodSpec(kind=kind),
                                    train=TRAIN), zoo=zoo, runs_dir=root / "runs")
    return zoo, root / "runs"


@pytest.mark.parametrize("kind", ADAPTERS)
def test_a_chain_starts_from_the_source_weights_exactly_with_a_new_head(sources, kind):
    zoo, runs = sources
    source = zoo.path(f"{kind}-sent")
    with spy_on_training() as seen:
        outcome = pipelines.train_run(RunSpec(task="toy-pair", name=f"{kind}-chain", method=MethodSpec(kind=kind),
                                              train=TRAIN, init_from=source), zoo=zoo, runs_dir=runs)
    saved_source = load_file(str(source / "adapter.safetensors"))
    # before the first optimizer step: the new adapter is the source's, tensor for tensor
    assert_identical(own(seen["before"], kind, f"{kind}-chain"), own(saved_source, kind, f"{kind}-sent"))
    # the head is new: toy-pair's 3 labels, and the source's head is not in the model at all
    assert seen["before"][f"heads.{kind}-chain.4.weight"].shape == (3, H)
    assert not [n for n in seen["before"] if f"heads.{kind}-sent" in n or f".{kind}-sent." in n]
    # after training the adapter moved
    after = own(seen["after"], kind, f"{kind}-chain")
    assert any(not torch.equal(after[k], v) for k, v in own(saved_source, kind, f"{kind}-sent").items())
    saved = load_file(str(outcome.path / "adapter.safetensors"))
    assert_identical(own(saved, kind, f"{kind}-chain"), after)
    manifest = outcome.manifest
    assert outcome.path == zoo.path(f"{kind}-chain") and manifest["kind"] == "adapter"
    assert manifest["init_from"] == {"path": str(source), "name": f"{kind}-sent"}
    assert manifest["chain"] == ["toy-sentiment", "toy-pair"]
    assert [t["name"] for t in manifest["tasks"]] == ["toy-pair"] and len(manifest["tasks"][0]["labels"]) == 3


def test_a_three_step_chain_is_recorded_loads_and_evaluates(sources, tmp_path):
    zoo, runs = sources
    first = zoo.path("bottleneck-sent")
    second = pipelines.train_run(RunSpec(task="toy-pair", name="step2", train=TRAIN, init_from=first),
                                 zoo=zoo, runs_dir=runs)
    # a zoo entry name works from the library too (resolved in the zoo the run is given)
    third = pipelines.train_run(RunSpec(task="toy-tags", name="step3", train=TRAIN, init_from=Path("step2")),
                                zoo=zoo, runs_dir=runs)
    assert second.manifest["chain"] == ["toy-sentiment", "toy-pair"]
    assert third.manifest["chain"] == ["toy-sentiment", "toy-pair", "toy-tags"]
    assert third.manifest["init_from"] == {"path": str(zoo.path("step2")), "name": "step2"}
    assert read_manifest(third.path).chain == ("toy-sentiment", "toy-pair", "toy-tags")
    report = pipelines.evaluate("step3", zoo=zoo, langs=["en"], split="validation", max_examples=8,
                                output=tmp_path / "step3.json")
    assert report.task == "toy-tags" and set(report.scores) == {"en"}
    # composable: a target on Stack(step3)
    stacked = pipelines.train_run(RunSpec(task="toy-sentiment", name="on-chain", train=TRAIN,
                                          compose=Composition(Block.STACK, ("step3",))), zoo=zoo, runs_dir=runs)
    assert stacked.manifest["composition"]["members"] == ["step3"] and "chain" not in stacked.manifest


def test_a_multi_task_source_is_one_step_and_a_multi_task_chain_gets_new_heads(sources):
    zoo, runs = sources
    multi = pipelines.train_run(RunSpec(task=("toy-pair", "toy-sentiment"), name="multi", train=TRAIN),
                                zoo=zoo, runs_dir=runs)
    assert "chain" not in multi.manifest
    after = pipelines.train_run(RunSpec(task=("toy-tags", "toy-sentiment"), name="after-multi", train=TRAIN,
                                        init_from=multi.path), zoo=zoo, runs_dir=runs)
    assert after.manifest["chain"] == ["toy-pair+toy-sentiment", "toy-tags+toy-sentiment"]
    assert [t["head"] for t in after.manifest["tasks"]] == ["after-multi", "after-multi_toy-sentiment"]


def test_old_manifests_have_no_chain_and_a_chain_must_be_a_list_of_names(sources, tmp_path):
    zoo, _ = sources
    manifest = read_manifest(zoo.path("lora-sent"))
    assert manifest.chain is None and "chain" not in manifest
    raw = manifest.to_json()
    from stepstone.manifest import Manifest

    with pytest.raises(StepstoneError, match=r"'chain' must be a non-empty list of task names, got \[\]"):
        Manifest.from_json({**raw, "chain": []}, "m.json")
    assert Manifest.from_json({**raw, "chain": ["a", "b"]}, "m.json").chain == ("a", "b")


# ------------------------------------------------------------------------------------------------ bad input
def refused(spec: RunSpec, zoo: Zoo, runs: Path, message: str) -> None:
    before = sorted(p.relative_to(zoo.root.parent) for p in zoo.root.parent.rglob("*"))
    with pytest.MonkeyPatch.context() as patch:  # every check comes before the backbone loads
        patch.setattr(train_steps, "load_backbone", lambda *a, **k: pytest.fail("the backbone was loaded"))
        with pytest.raises(StepstoneError) as caught:
            pipelines.train_run(spec, zoo=zoo, runs_dir=runs)
    assert str(caught.value) == message
    assert sorted(p.relative_to(zoo.root.parent) for p in zoo.root.parent.rglob("*")) == before


def test_mismatched_sources_are_refused_before_the_backbone_loads(sources):
    zoo, runs = sources
    bn, lora = zoo.path("bottleneck-sent"), zoo.path("lora-sent")
    refused(RunSpec(task="toy-pair", name="x", method=MethodSpec(kind="bottleneck"), train=TRAIN, init_from=lora),
            zoo, runs, f"init_from '{lora}' is a lora adapter, but this run trains bottleneck: a chain continues an "
                       "adapter with its own method (leave --method out to take it)")
    eight = MethodSpec(kind="bottleneck", bottleneck=replace(MethodSpec().bottleneck, reduction_factor=8))
    refused(RunSpec(task="toy-pair", name="x", method=eight, train=TRAIN, init_from=bn), zoo, runs,
            f"init_from '{bn}' is a bottleneck adapter with other settings (method.bottleneck.reduction_factor: 16 "
            "there, 8 here): a chain continues an adapter with the settings it was trained with (leave the method "
            "settings out to take them)")
    refused(RunSpec(task="toy-pair", name="x", method=MethodSpec(kind="full"), train=TRAIN, init_from=bn), zoo, runs,
            f"init_from '{bn}' is not a full fine-tune run (it is a bottleneck adapter): a full fine-tune starts from "
            "a full fine-tune run's encoder")
    refused(RunSpec(task="toy-pair", name="x", train=TRAIN, init_from=Path("bottlenek-sent")), zoo, runs,
            f"init_from 'bottlenek-sent' is neither a folder nor a zoo entry in {zoo.root} (entries: "
            f"{', '.join(zoo.names())}), did you mean 'bottleneck-sent'?")


def test_a_full_run_or_a_composed_run_does_not_start_an_adapter(sources, tmp_path):
    zoo, runs = sources
    full = pipelines.train_run(RunSpec(task="toy-sentiment", name="full-src", method=MethodSpec(kind="full"),
                                       train=TRAIN), zoo=zoo, runs_dir=runs)
    refused(RunSpec(task="toy-pair", name="x", train=TRAIN, init_from=full.path), zoo, runs,
            f"init_from '{full.path}' is a full fine-tune run, not an adapter: an adapter run starts from a zoo "
            "adapter of its method (bottleneck)")
    stacked = runs / "on-chain"
    if not stacked.is_dir():
        pipelines.train_run(RunSpec(task="toy-sentiment", name="on-chain", train=TRAIN,
                                    compose=Composition(Block.STACK, ("bottleneck-sent",))), zoo=zoo, runs_dir=runs)
    setup = read_manifest(stacked).composition.setup
    refused(RunSpec(task="toy-pair", name="x", train=TRAIN, init_from=stacked), zoo, runs,
            f"init_from '{stacked}' is a composed run ({setup}): its adapter was trained on top of its members; a "
            "chain starts from a zoo adapter")


def test_another_backbone_is_refused_before_it_loads(sources, tmp_path):
    zoo, runs = sources
    other = Zoo(tmp_path / "zoo")
    shutil.copytree(zoo.path("bottleneck-sent"), other.path("bottleneck-sent"))
    path = other.path("bottleneck-sent") / "manifest.json"
    raw = json.loads(path.read_text())
    raw["backbone"].update(name="xlm-roberta-base", fingerprint="0123456789abcdef")
    path.write_text(json.dumps(raw))
    refused(RunSpec(task="toy-pair", name="x", train=TRAIN, init_from=other.path("bottleneck-sent")), other,
            tmp_path / "runs", f"backbone 'tiny' is not the one init_from '{other.path('bottleneck-sent')}' was "
                               "trained on ('xlm-roberta-base' (fingerprint 0123456789abcdef)): leave --backbone out "
                               "to train on its backbone")


def test_init_from_and_compose_exclude_each_other(sources):
    zoo, _ = sources
    with pytest.raises(ValueError, match="init_from and compose exclude each other"):
        RunSpec(task="toy-pair", init_from=zoo.path("bottleneck-sent"),
                compose=Composition(Block.STACK, ("lora-sent",)))


# ------------------------------------------------------------------------------------------------ spec defaults
def test_a_run_naming_only_init_from_takes_its_method_and_backbone(sources, tmp_path):
    zoo, _ = sources
    spec = pipelines.load_run_spec(None, {"task": ["toy-pair"], "init_from": "lora-sent"}, zoo=zoo)
    assert spec.method == MethodSpec(kind="lora") and spec.backbone == BackboneSpec()
    assert spec.init_from == Path("lora-sent") and spec.run_name == "toy-pair-lora"
    named = pipelines.load_run_spec(None, {"task": ["toy-pair"], "init_from": "lora-sent"}, ["method.kind=ia3"],
                                    zoo=zoo)
    assert named.method == MethodSpec(kind="ia3")  # named: kept, and check_init refuses it
    assert chains.resolve_init(Path("lora-sent"), zoo) == zoo.path("lora-sent")
    assert chains.resolve_init(zoo.path("lora-sent"), Zoo(tmp_path / "empty")) == zoo.path("lora-sent")


class Stop(Exception):
    """Stands for the process dying right after a checkpoint."""


def test_resume_checks_the_init_adapter_is_unchanged(tmp_path, monkeypatch):
    store, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    source = RunSpec(task="toy-sentiment", name="src", train=TRAIN)
    pipelines.train_run(source, zoo=store, runs_dir=runs)
    spec = RunSpec(task="toy-pair", name="resumed", train=replace(TRAIN, checkpoint_every=1), init_from=Path("src"))
    save = train_steps.Checkpoints.save

    def save_then_stop(self, state):
        save(self, state)
        raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(train_steps.Checkpoints, "save", save_then_stop)
        with pytest.raises(Stop):
            pipelines.train_run(spec, zoo=store, runs_dir=runs)
    old = read_manifest(store.path("src")).files
    shutil.rmtree(store.path("src"))
    pipelines.train_run(replace(source, train=replace(TRAIN, seed=3)), zoo=store, runs_dir=runs)
    new = read_manifest(store.path("src")).files
    changed = next(name for name in sorted(new) if old.get(name) != new[name])
    with pytest.raises(StepstoneError) as caught:
        pipelines.train_run(spec, zoo=store, runs_dir=runs, resume=True)
    assert str(caught.value) == (
        f"{runs / 'resumed.checkpoint'} was written with other inputs: init_from '{store.path('src')}' changed "
        f"({changed}: sha256 {old[changed][:12]} -> {new[changed][:12]}) since; resume needs the same ones: put them "
        f"back, or remove the folder to start over")
    # put back, it resumes and finishes
    shutil.rmtree(store.path("src"))
    pipelines.train_run(source, zoo=store, runs_dir=runs)
    assert read_manifest(store.path("src")).files["adapter.safetensors"] == old["adapter.safetensors"]
    done = pipelines.train_run(spec, zoo=store, runs_dir=runs, resume=True)
    assert done.manifest["chain"] == ["toy-sentiment", "toy-pair"]
