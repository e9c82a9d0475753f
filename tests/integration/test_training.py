"""The training loop on the tiny backbone: exact trainable sets and parameter counts per mode, frozen members
staying bit-identical through composed training, reproducibility, and full fine-tuning with init_from."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepstone import methods, pipelines
from stepstone.pipelines import train as train_steps
from stepstone.backbone import TINY_SHAPE, load_backbone
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.methods import LoRASpec, LoRATarget
from stepstone.specs import BackboneSpec, Block, Composition, MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import get_task
from stepstone.tiny import build_tiny_tokenizer
from stepstone.training import Mode, set_trainable, trainable_names
from stepstone.zoo import Zoo

torch.set_num_threads(1)

TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=1e-3)
BN = MethodSpec(kind="bottleneck")
LORA = MethodSpec(kind="lora")
FULL = MethodSpec(kind="full")
LAYERS = range(TINY_SHAPE["num_hidden_layers"])

# ---------------------------------------------------------------------------- expected sizes, from TINY_SHAPE
H, I, N = TINY_SHAPE["hidden_size"], TINY_SHAPE["intermediate_size"], TINY_SHAPE["num_hidden_layers"]
VOCAB = 431  # the tiny tokenizer (tests/unit/test_tiny.py pins it)
LINEAR = H * H + H
BACKBONE = ((VOCAB + 514 + 1) * H + 2 * H  # word, position, token-type embeddings + LayerNorm
            + N * (4 * LINEAR + 2 * H + (H * I + I) + (I * H + H) + 2 * H)  # q k v o, LN, FFN in/out, LN
            + LINEAR)  # pooler
BOTTLENECK_16 = N * ((H * (H // 16) + H // 16) + (H // 16 * H + H))  # down + up, weights and biases
LORA_8_QV = N * 2 * (8 * H + H * 8)  # A (r x in) + B (out x r), in q and v
FUSE_2 = N * (3 * H * H + 2 * H)  # query, key (with bias), value (no bias)


def cls_head(labels: int) -> int:
    return LINEAR + (H * labels + labels)  # dense + out projection


def test_expected_sizes_are_the_numbers():
    assert len(build_tiny_tokenizer()) == VOCAB
    assert (BACKBONE, BOTTLENECK_16, LORA_8_QV, FUSE_2) == (402816, 4368, 8192, 98816)
    assert (cls_head(2), cls_head(3)) == (16770, 16899)
    assert load_backbone(BackboneSpec()).num_parameters == BACKBONE


# ------------------------------------------------------------------------------------- expected name sets
def bottleneck_names(name: str) -> set[str]:
    return {f"roberta.encoder.layer.{i}.output.adapters.{name}.{p}" for i in LAYERS
            for p in ("adapter_down.0.weight", "adapter_down.0.bias", "adapter_up.weight", "adapter_up.bias")}


def lora_names(name: str) -> set[str]:
    return {f"roberta.encoder.layer.{i}.attention.self.{m}.loras.{name}.lora_{ab}" for i in LAYERS
            for m in ("query", "value") for ab in "AB"}


def fusion_names(fusion: str) -> set[str]:
    return {f"roberta.encoder.layer.{i}.output.adapter_fusion_layer.{fusion}.{p}" for i in LAYERS
            for p in ("query.weight", "query.bias", "key.weight", "key.bias", "value.weight")}


def head_names(name: str) -> set[str]:
    return {f"heads.{name}.{p}" for p in ("1.weight", "1.bias", "4.weight", "4.bias")}


def crowded_model(target: MethodSpec):
    """The tiny backbone carrying everything a trainable set must exclude: two bottleneck members, a LoRA
    member, a fusion over the bottlenecks, a second adapter and a second head, plus the target and its head."""
    backbone = load_backbone(BackboneSpec())
    model = backbone.model
    for name in ("m1", "m2", "other"):
        methods.add_adapter(model, name, BN)
    methods.add_adapter(model, "ml", LORA)
    methods.add_adapter(model, "t", target)
    methods.add_fusion(model, ("m1", "m2"))
    task = get_task("toy-sentiment")
    handler_for(task).add_head(model, "other", task)
    handler_for(task).add_head(model, "t", task)
    return backbone, model


TRAINABLE_TABLE = {
    # id: (target method, mode, expected names, expected count)
    "adapter-bottleneck": (BN, Mode.ADAPTER, bottleneck_names("t") | head_names("t"), BOTTLENECK_16 + cls_head(2)),
    "adapter-lora": (LORA, Mode.ADAPTER, lora_names("t") | head_names("t"), LORA_8_QV + cls_head(2)),
    "fusion-bottleneck": (BN, Mode.FUSION, bottleneck_names("t") | head_names("t") | fusion_names("m1,m2"),
                          BOTTLENECK_16 + FUSE_2 + cls_head(2)),
    "fusion-lora": (LORA, Mode.FUSION, lora_names("t") | head_names("t") | fusion_names("m1,m2"),
                    LORA_8_QV + FUSE_2 + cls_head(2)),
}


@pytest.mark.parametrize("case", list(TRAINABLE_TABLE))
def test_trainable_set_is_exact(case):
    target, mode, expected, count = TRAINABLE_TABLE[case]
    backbone, model = crowded_model(target)
    fusion = "m1,m2" if mode is Mode.FUSION else None
    # computed from names, whatever requires_grad says now
    for frozen in (False, True):
        for param in model.parameters():
            param.requires_grad_(not frozen)
        assert trainable_names(model, mode, "t", fusion) == expected
    trainable = set_trainable(model, frozenset(expected), backbone.num_parameters)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert trainable.count == count
    assert trainable.backbone == BACKBONE
    assert trainable.percent == pytest.approx(100 * count / BACKBONE, rel=1e-12)


def test_trainable_set_full_is_every_parameter():
    backbone, model = crowded_model(BN)
    names = {n for n, _ in model.named_parameters()}
    assert trainable_names(model, Mode.FULL, "t") == names
    # the pipeline's full fine-tune model: backbone + one head
    backbone = load_backbone(BackboneSpec())
    task = get_task("toy-sentiment")
    handler_for(task).add_head(backbone.model, "t", task)
    names = trainable_names(backbone.model, Mode.FULL, "t")
    assert names == {n for n, _ in backbone.model.named_parameters()}
    assert set_trainable(backbone.model, names, backbone.num_parameters).count == BACKBONE + cls_head(2)


def test_fusion_mode_needs_the_fusion_name():
    _, model = crowded_model(BN)
    with pytest.raises(ValueError, match="fusion layer's name"):
        trainable_names(model, Mode.FUSION, "t")


# ------------------------------------------------------------------------------------------- trained zoo
@contextmanager
def spy_on_training():
    """Record the model's parameters right before and after training.train (the pipeline's own call)."""
    seen: dict = {}
    real = train_steps.train

    def spy(model, *args, **kwargs):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        result = real(model, *args, **kwargs)
        seen["after"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_steps, "train", spy)
        yield seen


def tensors(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Relative safetensors path -> its tensors, for every weights file under `folder`."""
    return {str(p.relative_to(folder)): load_file(str(p)) for p in sorted(folder.rglob("*.safetensors"))}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


ZOO_ENTRIES = {
    "bn-sent": ("toy-sentiment", BN),
    "bn-pair": ("toy-pair", BN),
    "lora-sent": ("toy-sentiment", LORA),
    "lora-pair": ("toy-pair", LORA),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Four zoo adapters and a snapshot of their weights files, taken before anything is composed on them."""
    root = tmp_path_factory.mktemp("training")
    zoo = Zoo(root / "zoo")
    outcomes = {}
    for name, (task, method) in ZOO_ENTRIES.items():
        outcomes[name] = pipelines.train_run(RunSpec(task=task, name=name, method=method, train=TRAIN), zoo=zoo,
                                             runs_dir=root / "runs")
    snapshots = {name: tensors(zoo.path(name)) for name in ZOO_ENTRIES}
    return zoo, root / "runs", outcomes, snapshots


@pytest.mark.parametrize("name, count", [
    ("bn-sent", BOTTLENECK_16 + cls_head(2)), ("bn-pair", BOTTLENECK_16 + cls_head(3)),
    ("lora-sent", LORA_8_QV + cls_head(2)), ("lora-pair", LORA_8_QV + cls_head(3)),
])
def test_standalone_trainable_count(zoo, name, count):
    _, _, outcomes, _ = zoo
    outcome = outcomes[name]
    assert outcome.trainable.count == count
    assert outcome.trainable.names == frozenset(
        (bottleneck_names(name) if name.startswith("bn") else lora_names(name)) | head_names(name))
    assert outcome.manifest["trainable"] == {"parameters": count, "backbone_parameters": BACKBONE,
                                             "percent_of_backbone": 100 * count / BACKBONE}
    assert outcome.manifest["mode"] == "adapter" and outcome.manifest["kind"] == "adapter"
    assert outcome.path == zoo[0].path(name)


# ------------------------------------------------------------------------------- composed runs, members frozen
COMPOSED = {
    # id: (block, members, target method, semantics, mode, target names, extra trainable count)
    "stack-sequential": (Block.STACK, ("bn-sent", "bn-pair"), BN, "sequential", Mode.ADAPTER, bottleneck_names, 0),
    "stack-placed": (Block.STACK, ("bn-sent",), LORA, "placed", Mode.ADAPTER, lora_names, 0),
    "stack-placed-lora-member": (Block.STACK, ("lora-sent",), BN, "placed", Mode.ADAPTER, bottleneck_names, 0),
    "stack-sum": (Block.STACK, ("lora-sent", "lora-pair"), LORA, "sum", Mode.ADAPTER, lora_names, 0),
    "fuse-bottleneck": (Block.FUSE, ("bn-sent", "bn-pair"), BN, "fusion", Mode.FUSION, bottleneck_names, FUSE_2),
    "fuse-lora": (Block.FUSE, ("bn-pair", "bn-sent"), LORA, "fusion", Mode.FUSION, lora_names, FUSE_2),
}


@pytest.fixture(scope="module")
def composed(zoo):
    """Train every COMPOSED cell once (target task toy-sentiment), recording weights around training."""
    store, runs, _, _ = zoo
    done = {}
    for case, (block, members, method, *_rest) in COMPOSED.items():
        with spy_on_training() as seen:
            outcome = pipelines.train_run(RunSpec(task="toy-sentiment", name=case, method=method, train=TRAIN,
                                                  compose=Composition(block, members)), zoo=store, runs_dir=runs)
        done[case] = (outcome, seen)
    return done


@pytest.mark.parametrize("case", list(COMPOSED))
def test_composed_manifest_and_trainable(zoo, composed, case):
    block, members, method, semantics, mode, target_names, extra = COMPOSED[case]
    outcome, _ = composed[case]
    base = BOTTLENECK_16 if method.kind == "bottleneck" else LORA_8_QV
    assert outcome.trainable.count == base + extra + cls_head(2)
    expected = target_names(case) | head_names(case)
    if mode is Mode.FUSION:
        expected |= fusion_names(",".join(members))
    assert outcome.trainable.names == frozenset(expected)
    assert outcome.path == zoo[1] / case
    m = outcome.manifest
    assert (m["kind"], m["mode"]) == ("run", mode.value)
    assert m["composition"]["block"] == block.value and m["composition"]["members"] == list(members)
    assert m["composition"]["semantics"] == semantics
    assert m["composition"]["member_methods"] == {e: zoo[2][e].manifest["method"] for e in members}


@pytest.mark.parametrize("case", list(COMPOSED))
def test_members_stay_bit_identical(zoo, composed, case):
    store, _, _, snapshots = zoo
    _, members, *_ = COMPOSED[case]
    outcome, seen = composed[case]
    for member in members:
        before = snapshots[member]
        # the zoo entry is untouched, and the run carries an exact copy
        assert tensors(store.path(member)).keys() == before.keys()
        for rel in before:
            assert_identical(tensors(store.path(member))[rel], before[rel])
            assert_identical(tensors(outcome.path / "members" / member)[rel], before[rel])
        # in memory, training never moved them (and their heads were not loaded)
        adapter = before["adapter.safetensors"]
        assert_identical({k: seen["after"][k] for k in adapter}, adapter)
        assert_identical({k: seen["before"][k] for k in adapter}, adapter)
        assert not [n for n in seen["after"] if n.startswith(f"heads.{member}.")]


@pytest.mark.parametrize("case", list(COMPOSED))
def test_target_and_fusion_weights_trained(composed, case):
    _, members, _, _, mode, _, _ = COMPOSED[case]
    outcome, seen = composed[case]
    saved = tensors(outcome.path / "target")
    saved = {**saved["adapter.safetensors"], **saved["model_head.safetensors"]}
    if mode is Mode.FUSION:
        fusion = tensors(outcome.path / "fusion")["model_adapter_fusion.safetensors"]
        assert set(fusion) == fusion_names(",".join(members))
        saved.update(fusion)
    assert set(saved) == set(outcome.trainable.names)
    # what was saved is what training left in memory, and training moved it
    assert_identical(saved, {k: seen["after"][k] for k in saved})
    # AdapterFusion's key bias adds the same score to every member, which softmax ignores: its gradient is 0
    # up to rounding, so whether Adam moves it is not part of the contract.
    moved = {k for k in saved if not k.endswith("adapter_fusion_layer." + ",".join(members) + ".key.bias")}
    assert len(moved) == len(saved) - (N if mode is Mode.FUSION else 0)
    assert sorted(k for k in moved if torch.equal(saved[k], seen["before"][k])) == []


@pytest.mark.parametrize("block, members, method, match", [
    (Block.FUSE, ("bn-sent", "lora-sent"), BN, "Fuse supports bottleneck members only"),
    (Block.STACK, ("lora-sent", "bn-sent"), LORA, "cannot also hold a bottleneck"),
    (Block.STACK, ("lora-sent",), MethodSpec(kind="lora",
                                             lora=LoRASpec(target_modules=(LoRATarget.INTERMEDIATE,))),
     r"must update the same modules \(lora-sent: q, v; refused: intermediate\)"),
    (Block.STACK, ("bn-sent", "missing"), BN,
     r"no zoo entry 'missing' in .* \(entries: bn-pair, bn-sent, lora-pair, lora-sent\)$"),
])
def test_unsupported_compositions_refused_before_writing(zoo, block, members, method, match):
    store, runs, _, _ = zoo
    spec = RunSpec(task="toy-sentiment", name="refused", method=method, train=TRAIN,
                   compose=Composition(block, members))
    with spy_on_training() as seen:
        with pytest.raises(StepstoneError, match=match):
            pipelines.train_run(spec, zoo=store, runs_dir=runs)
    assert seen == {} and not (runs / "refused").exists()


# ------------------------------------------------------------------------------------------ reproducibility
REPRO = {
    "standalone-bottleneck": dict(task="toy-tags", method=BN),
    "standalone-lora": dict(task="toy-qa", method=LORA),
    "fuse": dict(task="toy-pair", method=BN, compose=Composition(Block.FUSE, ("bn-sent", "bn-pair"))),
    "full": dict(task="toy-choice", method=FULL),
}


@pytest.mark.parametrize("case", list(REPRO))
def test_same_spec_twice_is_identical(zoo, tmp_path, case):
    store, _, _, _ = zoo
    kwargs = REPRO[case]
    standalone = "compose" not in kwargs and kwargs["method"] is not FULL
    outcomes = []
    for copy in ("one", "two"):
        target_zoo = Zoo(tmp_path / f"zoo-{copy}") if standalone else store
        outcomes.append(pipelines.train_run(RunSpec(name=f"repro-{copy}", train=TRAIN, **kwargs), zoo=target_zoo,
                                            runs_dir=tmp_path / f"runs-{copy}"))
    one, two = outcomes
    assert one.manifest["metrics"] == two.manifest["metrics"]
    assert one.manifest["history"] == two.manifest["history"]
    assert one.manifest["trainable"] == two.manifest["trainable"]

    def renamed(outcome, name):
        return {rel: {k.replace(name, "NAME"): v for k, v in ts.items()} for rel, ts in tensors(outcome.path).items()}

    a, b = renamed(one, "repro-one"), renamed(two, "repro-two")
    assert a.keys() == b.keys() and a
    for rel in a:
        assert_identical(a[rel], b[rel])


# -------------------------------------------------------------------------------- full fine-tune, init_from
def test_full_fine_tune_init_from(zoo, tmp_path):
    store, _, _, _ = zoo
    runs = tmp_path / "runs"
    source = pipelines.train_run(RunSpec(task="toy-pair", name="full-src", method=FULL, train=TRAIN), zoo=store,
                                 runs_dir=runs)
    assert source.trainable.count == BACKBONE + cls_head(3)
    assert source.manifest["init_from"] is None and source.manifest["mode"] == "full"
    source_weights = load_file(str(source.path / pipelines.FULL_WEIGHTS))
    assert {k for k in source_weights if k.startswith("heads.")} == head_names("full-src")

    with spy_on_training() as seen:
        target = pipelines.train_run(RunSpec(task="toy-sentiment", name="full-tgt", method=FULL, train=TRAIN,
                                             init_from=source.path), zoo=store, runs_dir=runs)
    assert target.manifest["init_from"] == {"path": str(source.path), "name": "full-src"}
    assert target.manifest["spec"]["init_from"] == str(source.path)
    assert target.trainable.count == BACKBONE + cls_head(2)
    # training started from the source's encoder (not the tiny init), with a new head and the old one dropped
    encoder = {k: v for k, v in source_weights.items() if not k.startswith("heads.")}
    assert_identical({k: seen["before"][k] for k in encoder}, encoder)
    assert not [n for n in seen["before"] if n.startswith("heads.full-src.")]
    fresh = dict(load_backbone(BackboneSpec()).model.named_parameters())
    assert not torch.equal(seen["before"]["roberta.encoder.layer.0.attention.self.query.weight"],
                           fresh["roberta.encoder.layer.0.attention.self.query.weight"])
    saved = load_file(str(target.path / pipelines.FULL_WEIGHTS))
    assert {k for k in saved if k.startswith("heads.")} == head_names("full-tgt")
    assert_identical(saved, {k: seen["after"][k] for k in saved})

    # and the same target without init_from trains something else
    plain = pipelines.train_run(RunSpec(task="toy-sentiment", name="full-plain", method=FULL, train=TRAIN),
                                zoo=store, runs_dir=runs)
    assert plain.manifest["init_from"] is None
    other = load_file(str(plain.path / pipelines.FULL_WEIGHTS))
    assert not torch.equal(other["roberta.encoder.layer.0.attention.self.query.weight"],
                           saved["roberta.encoder.layer.0.attention.self.query.weight"])


def test_init_from_must_be_a_full_fine_tune(zoo, tmp_path):
    store, _, _, _ = zoo
    spec = RunSpec(task="toy-sentiment", name="bad-init", method=FULL, train=TRAIN, init_from=store.path("bn-sent"))
    with pytest.raises(StepstoneError, match="is not a full fine-tune run"):
        pipelines.train_run(spec, zoo=store, runs_dir=tmp_path)
    assert not (tmp_path / "bad-init").exists()
    # an adapter run takes init_from since issue 16 (a chain: tests/integration/test_chains.py)
    assert RunSpec(task="toy-sentiment", method=BN, init_from=store.path("bn-sent")).init_from == store.path("bn-sent")


# ------------------------------------------------------------------------------- Average (issue 14)
def test_average_target_trains_saves_reloads_and_records_weights(zoo, tmp_path):
    """A target on Average(bn-sent=0.7, bn-pair=0.3): the manifest records the normalised weights, and the
    reloaded run computes exactly what the hand-built adapters setup computes (logits bit-identical)."""
    from adapters.composition import Average, Stack

    from stepstone.toy import generate

    store, runs, outcomes, _ = zoo
    members = ("bn-sent", "bn-pair")
    spec = RunSpec(task="toy-sentiment", name="average-bn", method=BN, train=TRAIN,
                   compose=Composition(Block.AVERAGE, members, (0.7, 0.3)))
    outcome = pipelines.train_run(spec, zoo=store, runs_dir=runs)
    assert outcome.trainable.count == BOTTLENECK_16 + cls_head(2)
    assert outcome.trainable.names == frozenset(bottleneck_names("average-bn") | head_names("average-bn"))
    assert outcome.manifest["composition"] == {
        "block": "average", "members": list(members), "semantics": "average", "weights": [0.7, 0.3],
        "setup": "Average(bn-sent=0.70, bn-pair=0.30) + average-bn",
        "member_methods": {e: outcomes[e].manifest["method"] for e in members}}
    assert outcome.manifest.mode == "adapter"

    backbone, manifest, task = pipelines.load_for_inference(outcome.path)
    assert manifest.composition.composition() == spec.compose
    by_hand = load_backbone(BackboneSpec())
    for member in members:
        methods.load_adapter(by_hand.model, outcome.path / "members" / member, member, with_head=False)
    methods.load_adapter(by_hand.model, outcome.path / "target", "average-bn", with_head=True)
    # adapters' Average takes mean_i(w_i h_i): 2 w_i gives the weighted mean of the two members' outputs
    methods.activate(by_hand.model, Stack(Average(*members, weights=[2 * 0.7, 2 * 0.3], normalize_weights=False),
                                          "average-bn"), head="average-bn")
    by_hand.model.eval()
    handler = handler_for(task)
    rows = handler.encode(generate("toy-sentiment", "validation", "en", n=6), backbone.tokenizer, task, 128, 64,
                          train=False)
    batch = handler.collate(rows, backbone.tokenizer)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        assert torch.equal(backbone.model(**inputs).logits, by_hand.model(**inputs).logits)
    # and the reloaded run is the trained one: evaluating the dev examples gives the recorded dev metrics
    evaluation = pipelines.evaluate(str(outcome.path), zoo=store, langs=["en"], split="validation",
                                    max_examples=16, output=tmp_path / "eval.json")
    assert evaluation.scores == {"en": outcome.manifest["metrics"]["dev"]}
