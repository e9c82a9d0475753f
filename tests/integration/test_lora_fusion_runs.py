"""Fuse over LoRA members end to end on the tiny backbone (issue 14): two LoRA zoo adapters, a target trained
on Fuse(a, b) through train_run (LoRA and bottleneck targets), the exact trainable set, members bit-identical,
gates trained, the saved run reloading to bit-identical logits, its manifest and files checked on load."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stepstone import composition as comp
from stepstone import pipelines
from stepstone.pipelines import inference
from stepstone.pipelines import train as train_steps
from stepstone.backbone import TINY_SHAPE
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.manifest import ArtifactLayout, read_manifest
from stepstone.specs import Block, Composition, MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import get_task
from stepstone.toy import generate
from stepstone.training import MODES, Mode
from stepstone.zoo import Zoo

torch.set_num_threads(1)

TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=1e-3)
LORA, BN = MethodSpec(kind="lora"), MethodSpec(kind="bottleneck")
H, I, N = TINY_SHAPE["hidden_size"], TINY_SHAPE["intermediate_size"], TINY_SHAPE["num_hidden_layers"]
LINEAR = H * H + H
MEMBERS = ("lora-sent", "lora-pair")
FUSION = "lora-sent,lora-pair"
GATED = [f"roberta.encoder.layer.{i}.attention.self.{m}" for i in range(N) for m in ("query", "value")]
# by hand: a gate Linear(d_in, n) per gated layer (q and v of every layer): n x (d_in + 1) each
GATES = len(GATED) * len(MEMBERS) * (H + 1)
LORA_8_QV = N * 2 * (8 * H + H * 8)  # the default LoRA target: A (8 x H) + B (H x 8) in q and v
BOTTLENECK_16 = N * ((H * (H // 16) + H // 16) + (H // 16 * H + H))
HEAD_2 = LINEAR + (H * 2 + 2)  # toy-sentiment's classification head: dense + out projection


def test_the_numbers_by_hand():
    assert (H, N, GATES, LORA_8_QV, BOTTLENECK_16, HEAD_2) == (128, 2, 1032, 8192, 4368, 16770)


@contextmanager
def keep_model():
    """The model pipelines.train trained, and its parameters right before and after."""
    seen: dict = {}
    real = train_steps.train

    def spy(model, *args, **kwargs):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        result = real(model, *args, **kwargs)
        seen["after"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen["model"] = model
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_steps, "train", spy)
        yield seen


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-fusion")
    zoo = Zoo(root / "zoo")
    for name, task in zip(MEMBERS, ("toy-sentiment", "toy-pair")):
        pipelines.train_run(RunSpec(task=task, name=name, method=LORA, train=TRAIN), zoo=zoo, runs_dir=root / "runs")
    snapshots = {name: load_file(str(zoo.path(name) / "adapter.safetensors")) for name in MEMBERS}
    done = {}
    for name, method in (("fused-lora", LORA), ("fused-bn", BN)):
        with keep_model() as seen:
            outcome = pipelines.train_run(RunSpec(task="toy-sentiment", name=name, method=method, train=TRAIN,
                                                  compose=Composition(Block.FUSE, MEMBERS)),
                                          zoo=zoo, runs_dir=root / "runs")
        done[name] = (outcome, seen)
    return zoo, snapshots, done


def inputs(tokenizer) -> dict:
    task = get_task("toy-sentiment")
    handler = handler_for(task)
    rows = handler.encode(generate("toy-sentiment", "validation", "en", n=8), tokenizer, task, 128, 64, train=False)
    batch = handler.collate(rows, tokenizer)
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def gate_names() -> set[str]:
    return {f"{path}.lora_fusion.{FUSION}.{p}" for path in GATED for p in ("weight", "bias")}


@pytest.mark.parametrize("name, target", [("fused-lora", LORA_8_QV), ("fused-bn", BOTTLENECK_16)])
def test_trainable_set_is_the_gates_the_target_and_the_head(runs, name, target):
    outcome, _ = runs[2][name]
    assert outcome.trainable.count == GATES + target + HEAD_2
    assert outcome.trainable.count == {"fused-lora": 25994, "fused-bn": 22170}[name]
    gates = {n for n in outcome.trainable.names if ".lora_fusion." in n}
    assert gates == gate_names()
    kinds = {n.split(".")[0] if n.startswith("heads.") else ("gate" if ".lora_fusion." in n else
             "loras" if ".loras." in n else "adapters") for n in outcome.trainable.names}
    assert kinds == {"heads", "gate", "loras" if name == "fused-lora" else "adapters"}
    assert not [n for n in outcome.trainable.names if any(f".{m}." in n for m in MEMBERS)]


@pytest.mark.parametrize("name", ["fused-lora", "fused-bn"])
def test_members_stay_bit_identical_and_gates_train(runs, name):
    zoo, snapshots, done = runs
    outcome, seen = done[name]
    for member in MEMBERS:
        before = snapshots[member]
        for copy in (zoo.path(member), outcome.path / "members" / member):
            after = load_file(str(copy / "adapter.safetensors"))
            assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
        assert all(torch.equal(seen["after"][k], before[k]) and torch.equal(seen["before"][k], before[k])
                   for k in before)
    gates = load_file(str(outcome.path / "lora_fusion" / "lora_fusion.safetensors"))
    assert set(gates) == gate_names()
    assert all(torch.equal(seen["before"][k], torch.zeros_like(gates[k])) for k in gates)  # uniform at start
    assert all(torch.equal(gates[k], seen["after"][k]) for k in gates)  # saved as trained
    assert [k for k in gates if torch.equal(gates[k], seen["before"][k])] == []  # every gate moved


@pytest.mark.parametrize("name, method", [("fused-lora", "lora"), ("fused-bn", "bottleneck")])
def test_manifest_and_layout(runs, name, method):
    outcome, _ = runs[2][name]
    m = outcome.manifest
    assert (m["kind"], m["mode"], m["method"]["kind"]) == ("run", "lora-fusion", method)
    assert (m["composition"]["block"], m["composition"]["members"], m["composition"]["semantics"]) == (
        "fuse", list(MEMBERS), "lora-fusion")
    assert m["composition"]["setup"] == f"Fuse(lora-sent, lora-pair) + {name}"
    assert sorted(p.name for p in outcome.path.iterdir()) == [
        "config.yaml", "lora_fusion", "manifest.json", "members", "target", "train_log.jsonl"]
    assert {f for f in m["files"] if f.startswith("lora_fusion/")} == {
        "lora_fusion/lora_fusion_config.json", "lora_fusion/lora_fusion.safetensors"}
    config = json.loads((outcome.path / "lora_fusion" / "lora_fusion_config.json").read_text())
    assert (config["members"], config["name"]) == (list(MEMBERS), FUSION)
    assert ArtifactLayout.LORA_FUSION == comp.LAYERS[comp.Semantics.LORA_FUSION].folder == "lora_fusion"
    assert MODES.get("lora-fusion") is Mode.LORA_FUSION


@pytest.mark.parametrize("name", ["fused-lora", "fused-bn"])
def test_the_saved_run_reloads_to_bit_identical_logits(runs, name):
    outcome, seen = runs[2][name]
    trained = seen["model"]
    trained.eval()
    loaded, manifest, _ = pipelines.load_for_inference(outcome.path)
    batch = inputs(loaded.tokenizer)
    with torch.no_grad():
        want, got = trained(**batch).logits, loaded.model(**batch).logits
    assert torch.equal(got, want)
    # the gates are in the path: without them the logits differ
    from stepstone import lora_fusion

    lora_fusion.activate_lora_fusion(loaded.model, None)
    with torch.no_grad():
        assert not torch.allclose(loaded.model(**batch).logits, want, atol=1e-6, rtol=0)


def copy_run(runs, name: str, tmp_path: Path) -> Path:
    import shutil

    destination = tmp_path / name
    shutil.copytree(runs[2][name][0].path, destination)
    return destination


def rehash(path: Path) -> None:
    from stepstone.manifest import write_manifest

    write_manifest(path, read_manifest(path, verify=False))


def test_a_tampered_gate_file_is_refused_on_load(runs, tmp_path):
    path = copy_run(runs, "fused-lora", tmp_path)
    file = path / "lora_fusion" / "lora_fusion.safetensors"
    gates = load_file(str(file))
    key = sorted(gates)[0]
    gates[key] = gates[key] + 1.0
    save_file(gates, str(file))
    with pytest.raises(StepstoneError, match=r"weights file lora_fusion/lora_fusion.safetensors is corrupted "
                                             r"\(sha256 mismatch\)$"):
        pipelines.load_for_inference(path)
    # re-hashed (a tool that rewrote it): the strict load still refuses a gate that is not the model's
    gates[key + "_renamed"] = gates.pop(key)
    save_file(gates, str(file))
    rehash(path)
    with pytest.raises(StepstoneError, match=r"lora_fusion.safetensors' does not fit the model"):
        pipelines.load_for_inference(path)


def test_a_gate_config_of_other_members_is_refused_before_the_backbone_loads(runs, tmp_path, monkeypatch):
    path = copy_run(runs, "fused-lora", tmp_path)
    file = path / "lora_fusion" / "lora_fusion_config.json"
    config = json.loads(file.read_text())
    config["members"] = ["lora-pair", "lora-sent"]
    file.write_text(json.dumps(config))
    rehash(path)
    monkeypatch.setattr(inference, "load_backbone", lambda *a: pytest.fail("the backbone was loaded"))
    with pytest.raises(StepstoneError) as err:
        pipelines.load_for_inference(path)
    assert str(err.value) == (f"{file}: fuses ['lora-pair', 'lora-sent'], but the members are "
                              f"['lora-sent', 'lora-pair']")


def test_a_missing_gate_folder_is_refused(runs, tmp_path):
    import shutil

    path = copy_run(runs, "fused-lora", tmp_path)
    shutil.rmtree(path / "lora_fusion")
    with pytest.raises(StepstoneError, match=r"weights file lora_fusion/lora_fusion.safetensors is missing$"):
        pipelines.load_for_inference(path)


@pytest.mark.parametrize("edit, problem", [
    (lambda m: m.update(mode="fusion"), "'composition.semantics' is 'lora-fusion', but 'mode' is 'fusion'"),
    (lambda m: m.update(mode="adapter"), "'composition.block' is 'fuse', but 'mode' is 'adapter'"),
    (lambda m: m["composition"].update(semantics="fusion"),
     "'composition.semantics' is 'fusion', but 'mode' is 'lora-fusion'"),
])
def test_manifest_mode_follows_the_semantics(runs, tmp_path, edit, problem):
    path = copy_run(runs, "fused-lora", tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StepstoneError) as err:
        read_manifest(path)
    assert str(err.value) == f"{path / 'manifest.json'}: {problem}"


def test_fuse_of_loras_updating_different_modules_is_refused_before_writing(runs, tmp_path):
    from stepstone.methods import LoRASpec, LoRATarget

    zoo = runs[0]
    ffn = MethodSpec(kind="lora", lora=LoRASpec(target_modules=(LoRATarget.INTERMEDIATE,)))
    pipelines.train_run(RunSpec(task="toy-pair", name="lora-ffn", method=ffn, train=TRAIN), zoo=zoo,
                        runs_dir=tmp_path / "runs")
    with pytest.raises(StepstoneError) as err:
        pipelines.train_run(RunSpec(task="toy-sentiment", name="mixed-modules", method=LORA, train=TRAIN,
                                    compose=Composition(Block.FUSE, ("lora-sent", "lora-ffn"))),
                            zoo=zoo, runs_dir=tmp_path / "runs")
    assert str(err.value) == ("LoRA members of one Fuse must update the same modules (lora-sent: q, v; "
                              "lora-ffn: intermediate)")
    assert not (tmp_path / "runs" / "mixed-modules").exists()


def test_resume_a_lora_fusion_run(tmp_path, monkeypatch):
    """Stopped right after a checkpoint and resumed, a Fuse-over-LoRA run saves exactly what an uninterrupted
    one saves (gates, target, head, history): the gates are checkpointed like every trainable parameter."""
    from dataclasses import replace

    from stepstone.checkpoint import Checkpoints

    train = replace(TRAIN, epochs=2, batch_size=8, max_train_examples=40, checkpoint_every=3, lr=5e-3)
    saved = {}
    for root in ("a", "b"):
        zoo = Zoo(tmp_path / root / "zoo")
        for member, task in zip(MEMBERS, ("toy-sentiment", "toy-pair")):
            pipelines.train_run(RunSpec(task=task, name=member, method=LORA, train=TRAIN), zoo=zoo,
                                runs_dir=tmp_path / root / "runs")
    run = RunSpec(task="toy-sentiment", name="f", method=LORA, train=train, compose=Composition(Block.FUSE, MEMBERS))
    whole = pipelines.train_run(run, zoo=Zoo(tmp_path / "a" / "zoo"), runs_dir=tmp_path / "a" / "runs")

    class Stop(Exception):
        pass

    save = Checkpoints.save

    def save_then_stop(self, state):
        path = save(self, state)
        if state.step == 6:
            raise Stop
        return path

    zoo_b, runs_b = Zoo(tmp_path / "b" / "zoo"), tmp_path / "b" / "runs"
    with monkeypatch.context() as patch:
        patch.setattr(Checkpoints, "save", save_then_stop)
        with pytest.raises(Stop):
            pipelines.train_run(run, zoo=zoo_b, runs_dir=runs_b)
    resumed = pipelines.train_run(run, zoo=zoo_b, runs_dir=runs_b, resume=True)
    for outcome in (whole, resumed):
        files = sorted(outcome.path.rglob("*.safetensors"))
        saved[outcome.path] = {f"{f.relative_to(outcome.path)}:{k}": t for f in files
                               for k, t in load_file(str(f)).items()}
    a, b = saved[whole.path], saved[resumed.path]
    assert a.keys() == b.keys() and any(k.startswith("lora_fusion/") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert whole.manifest["history"] == resumed.manifest["history"]
