"""`stepstone zoo merge` (stepstone.merge): the merged tensors against a hand-computed weighted mean, heads
averaged or dropped, the new entry loading, evaluating and composing like any zoo entry, and every refusal
leaving the zoo as it was."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepstone import merge as merging
from stepstone import pipelines
from stepstone.errors import StepstoneError
from stepstone.integrity import check_artifact
from stepstone.methods import LoRASpec
from stepstone.specs import Block, Composition, MethodSpec, RunSpec, TrainSpec
from stepstone.toy import generate
from stepstone.formats import handler_for
from stepstone.zoo import Zoo

torch.set_num_threads(1)

TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=1e-3)
ENTRIES = {  # name: (task, method, seed)
    "bn-a": ("toy-sentiment", MethodSpec(kind="bottleneck"), 0),
    "bn-b": ("toy-sentiment", MethodSpec(kind="bottleneck"), 1),
    "bn-c": ("toy-sentiment", MethodSpec(kind="bottleneck"), 2),
    "bn-pair": ("toy-pair", MethodSpec(kind="bottleneck"), 3),
    "lora-a": ("toy-sentiment", MethodSpec(kind="lora"), 4),
    "lora-b": ("toy-sentiment", MethodSpec(kind="lora"), 5),
    "lora-r4": ("toy-sentiment", MethodSpec(kind="lora", lora=LoRASpec(r=4)), 6),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    store = Zoo(root / "zoo")
    for name, (task, method, seed) in ENTRIES.items():
        pipelines.train_run(RunSpec(task=task, name=name, method=method, train=TrainSpec(
            **{**TRAIN.__dict__, "seed": seed})), zoo=store, runs_dir=root / "runs")
    return store, root


@pytest.fixture
def fresh(zoo, tmp_path):
    """A copy of the trained zoo each test may write into."""
    store, _ = zoo
    shutil.copytree(store.root, tmp_path / "zoo")
    return Zoo(tmp_path / "zoo")


def renamed_tensors(file: Path, old: str, new: str) -> dict[str, torch.Tensor]:
    return {k.replace(f".{old}.", f".{new}."): v for k, v in load_file(str(file)).items()}


def by_hand(store: Zoo, members: tuple[str, ...], weights: tuple[float, ...], file: str, new: str) -> dict:
    """sum_i w_i T_i per tensor, in member order, from the members' safetensors."""
    tensors = [renamed_tensors(store.path(m) / file, m, new) for m in members]
    out = {}
    for key in tensors[0]:
        total = weights[0] * tensors[0][key]
        for w, t in zip(weights[1:], tensors[1:]):
            total = total + w * t[key]
        out[key] = total
    return out


def assert_equal_tensors(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key


@pytest.mark.parametrize("members, weights, normalised", [
    (("bn-a", "bn-b"), (0.7, 0.3), (0.7, 0.3)),
    (("bn-a", "bn-b", "bn-c"), None, (1 / 3, 1 / 3, 1 / 3)),
    (("lora-a", "lora-b"), (3.0, 1.0), (0.75, 0.25)),
], ids=["bn-weighted", "bn-uniform-3", "lora-weighted"])
def test_merged_tensors_are_the_hand_computed_weighted_mean(fresh, members, weights, normalised):
    entry = merging.merge("merged", members, weights, fresh)
    assert entry.path == fresh.path("merged")
    for file in ("adapter.safetensors", "model_head.safetensors"):  # one task: the heads are averaged too
        assert_equal_tensors(load_file(str(entry.path / file)), by_hand(fresh, members, normalised, file, "merged"))
    m = entry.manifest
    assert (m.kind.value, m.mode, m.name, m.composition) == ("adapter", "adapter", "merged", None)
    member = fresh.get(members[0]).manifest
    assert m.method == member.method and m.backbone == member.backbone
    assert m["merged_from"]["members"] == list(members) and tuple(m["merged_from"]["weights"]) == normalised
    assert m["merged_from"]["heads"] is True
    lora = members[0].startswith("lora")
    assert m["merged_from"]["note"] == merging.NOTE + (merging.LORA_NOTE if lora else "")
    assert ("LoRA A and B are averaged separately" in m["merged_from"]["note"]) is lora
    assert [t.to_json() for t in m.tasks] == [{**member.task.to_json(), "head": "merged"}]
    assert m["metrics"] == {"dev": {}, "best_epoch": None, "main": "accuracy"}
    parameters = sum(t.numel() for f in ("adapter.safetensors", "model_head.safetensors")
                     for t in load_file(str(entry.path / f)).values())
    assert m["trainable"]["parameters"] == parameters == member["trainable"]["parameters"]
    assert sorted(p.name for p in entry.path.iterdir()) == [
        "adapter.safetensors", "adapter_config.json", "head_config.json", "manifest.json", "model_head.safetensors"]
    assert json.loads((entry.path / "adapter_config.json").read_text())["name"] == "merged"
    check_artifact(entry.path, m)


def test_lora_merge_is_not_the_mean_of_the_updates(fresh):
    merged = load_file(str(merging.merge("merged", ("lora-a", "lora-b"), None, fresh).path / "adapter.safetensors"))
    a, b = (load_file(str(fresh.path(n) / "adapter.safetensors")) for n in ("lora-a", "lora-b"))
    key = next(k for k in merged if k.endswith("lora_A"))
    ka, kb, kB = key.replace(".merged.", ".lora-a."), key.replace(".merged.", ".lora-b."), key[:-1] + "B"
    update = merged[kB] @ merged[key]
    mean = (a[ka[:-1] + "B"] @ a[ka] + b[kb[:-1] + "B"] @ b[kb]) / 2
    assert torch.count_nonzero(mean) > 0 and (update - mean).abs().max().item() > 1e-7


def inputs_for(task_name: str, tokenizer, task):
    handler = handler_for(task)
    rows = handler.encode(generate(task_name, "validation", "en", n=6), tokenizer, task, 128, 64, train=False)
    batch = handler.collate(rows, tokenizer)
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def test_merged_entry_evaluates_as_the_model_with_hand_set_weights(fresh, tmp_path):
    """The merged entry's logits == member bn-a's model with every adapter and head tensor overwritten by the
    hand-computed mean; and `evaluate` scores it."""
    entry = merging.merge("merged", ("bn-a", "bn-b"), (0.7, 0.3), fresh)
    backbone, _, task = pipelines.load_for_inference(entry.path)
    reference, _, _ = pipelines.load_for_inference(fresh.path("bn-a"))
    expected = {**by_hand(fresh, ("bn-a", "bn-b"), (0.7, 0.3), "adapter.safetensors", "bn-a"),
                **by_hand(fresh, ("bn-a", "bn-b"), (0.7, 0.3), "model_head.safetensors", "bn-a")}
    params = dict(reference.model.named_parameters())
    with torch.no_grad():
        for key, value in expected.items():
            params[key].copy_(value)
    inputs = inputs_for("toy-sentiment", backbone.tokenizer, task)
    with torch.no_grad():
        assert torch.equal(backbone.model(**inputs).logits, reference.model(**inputs).logits)
    evaluation = pipelines.evaluate("merged", zoo=fresh, langs=["en"], split="validation", max_examples=16,
                                    output=tmp_path / "eval.json")
    assert set(evaluation.scores) == {"en"} and 0 <= evaluation.scores["en"]["accuracy"] <= 100


def test_merged_entry_composes(fresh, tmp_path):
    merging.merge("merged", ("bn-a", "bn-b"), None, fresh)
    outcome = pipelines.train_run(RunSpec(task="toy-tags", name="on-merged", train=TRAIN,
                                          compose=Composition(Block.STACK, ("merged",))),
                                  zoo=fresh, runs_dir=tmp_path / "runs")
    assert outcome.manifest["composition"]["members"] == ["merged"]
    assert pipelines.load_for_inference(outcome.path)[1].name == "on-merged"
    # a composed run (here copied into the zoo) is no zoo adapter: it does not merge
    shutil.copytree(outcome.path, fresh.path("on-merged"))
    with pytest.raises(StepstoneError) as err:
        merging.merge("m", ("bn-a", "on-merged"), None, fresh)
    assert str(err.value) == "zoo merge: 'on-merged' is a run, not a zoo adapter: only zoo adapters merge"
    assert not fresh.path("m").exists()


def test_members_of_different_tasks_merge_without_a_head(fresh):
    entry = merging.merge("headless", ("bn-a", "bn-pair"), None, fresh)
    assert sorted(p.name for p in entry.path.iterdir()) == ["adapter.safetensors", "adapter_config.json",
                                                           "manifest.json"]
    assert_equal_tensors(load_file(str(entry.path / "adapter.safetensors")),
                         by_hand(fresh, ("bn-a", "bn-pair"), (0.5, 0.5), "adapter.safetensors", "headless"))
    m = entry.manifest
    assert m.tasks == () and m["task"]["name"] == "-" and m["merged_from"]["heads"] is False
    assert m["spec"] == {"backbone": fresh.get("bn-a").manifest["spec"]["backbone"],
                         "method": fresh.get("bn-a").manifest["spec"]["method"]}
    with pytest.raises(StepstoneError) as err:
        pipelines.evaluate("headless", zoo=fresh)
    assert str(err.value) == ("'headless' has no task head (an imported adapter): evaluate it on a retrieval task "
                              "(--task bucc or tatoeba), or train a head on it: --on \"Stack(headless)\"")


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("new, members, weights, message", [
    ("m", ("bn-a", "lora-a"), None,
     "zoo merge: 'lora-a' is a lora adapter, 'bn-a' a bottleneck adapter: members must share the method"),
    ("m", ("lora-a", "lora-r4"), None,
     "zoo merge: 'lora-r4' has lora setting r=4, 'lora-a' has r=8: members must share the method's settings"),
    ("m", ("bn-a",), None, "zoo merge needs at least two members (got 1: bn-a)"),
    ("m", ("bn-a", "bn-a"), None, "zoo merge: composition members must be distinct"),
    ("m", ("bn-a", "ghost"), None, "no zoo entry 'ghost' in <zoo> (entries: bn-a, bn-b, bn-c, bn-pair, lora-a, "
                                   "lora-b, lora-r4)"),
    ("bn-c", ("bn-a", "bn-b"), None, "'<zoo>/bn-c' already exists; pick another name or remove it first"),
    ("bn-a", ("bn-a", "bn-b"), None, "zoo merge: the new entry 'bn-a' cannot also be a member"),
    ("../x", ("bn-a", "bn-b"), None, "invalid zoo entry name '../x': use 1-64 letters, digits, '-' or '_', "
                                     "starting with a letter or digit"),
    ("m", ("bn-a", "bn-b"), (0.5,), "zoo merge: 2 members but 1 weights; weights are NAME=W for every member or "
                                    "for none (uniform), each W a finite number > 0; they are normalised to sum 1"),
    ("m", ("bn-a", "bn-b"), (1.0, 0.0), "zoo merge: weight 0.0 of 'bn-b' is not a finite number > 0; weights are "
                                        "NAME=W for every member or for none (uniform), each W a finite number > 0; "
                                        "they are normalised to sum 1"),
])
def test_refusals_write_nothing(fresh, new, members, weights, message):
    before = snapshot(fresh.root)
    with pytest.raises(StepstoneError) as err:
        merging.merge(new, members, weights, fresh)
    assert str(err.value) == message.replace("<zoo>", str(fresh.root))
    assert snapshot(fresh.root) == before


def test_members_on_different_backbones_refused(fresh):
    path = fresh.path("bn-b") / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["backbone"].update(name="xlm-roberta-base", fingerprint="0123456789abcdef")
    path.write_text(json.dumps(manifest))
    with pytest.raises(StepstoneError) as err:
        merging.merge("m", ("bn-a", "bn-b"), None, fresh)
    fingerprint = fresh.get("bn-a").manifest.backbone.fingerprint
    assert str(err.value) == (f"zoo merge: 'bn-b' was trained on backbone 'xlm-roberta-base' (fingerprint "
                              f"0123456789abcdef), 'bn-a' on 'tiny' (fingerprint {fingerprint}): members must "
                              f"share the backbone")
    assert not fresh.path("m").exists()


def test_a_failed_write_leaves_no_entry(fresh, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    before = snapshot(fresh.root)
    with pytest.raises(StepstoneError, match=r"could not save '.*/m': .*nothing was saved"):
        merging.merge("m", ("bn-a", "bn-b"), None, fresh)
    assert snapshot(fresh.root) == before


def test_cli_merge_prints_the_entry_and_zoo_list_shows_it(fresh):
    from typer.testing import CliRunner

    from stepstone_cli.main import app

    runner = CliRunner(env={"COLUMNS": "200"})
    done = runner.invoke(app, ["zoo", "merge", "soup", "bn-a", "bn-b", "--weights", "3,1", "--zoo", str(fresh.root)])
    assert done.exit_code == 0, done.output
    assert done.stdout == f"merged bn-a 0.75, bn-b 0.25 into {fresh.path('soup')} (head: toy-sentiment)\n"
    assert fresh.get("soup").manifest["merged_from"]["weights"] == [0.75, 0.25]
    listed = runner.invoke(app, ["zoo", "list", "--zoo", str(fresh.root)])
    assert listed.exit_code == 0 and "soup" in listed.stdout
