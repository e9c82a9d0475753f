"""Low-memory training on the tiny backbone: 4/8-bit backbones (bitsandbytes runs on CPU), bf16 / fp16
autocast, gradient checkpointing, length-grouped batches. What trains stays fp32; a quantised artifact
reloads quantised."""
from __future__ import annotations

from dataclasses import replace

import bitsandbytes as bnb
import pytest
import torch
from adapters.methods.lora import LoRALayer
from safetensors.torch import load_file

from stepstone import pipelines
from stepstone.backbone import load_backbone
from stepstone.composition import parse
from stepstone.specs import BackboneSpec, MethodSpec, Precision, Quantize, RunSpec, TrainSpec
from stepstone.zoo import Zoo

torch.set_num_threads(1)
TRAIN = TrainSpec(epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16, lr=5e-3)
LINEAR = {Quantize.NF4: bnb.nn.Linear4bit, Quantize.INT8: bnb.nn.Linear8bitLt}


def run(tmp_path, name: str, kind: str = "bottleneck", quantize: Quantize = Quantize.NONE,
        compose: str | None = None, **train):
    spec = RunSpec(task="toy-tags", name=name, method=MethodSpec(kind=kind), backbone=BackboneSpec("tiny", quantize=quantize),
                   train=replace(TRAIN, **train), compose=parse(compose) if compose else None)
    return pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs")


def test_a_quantised_backbone_counts_its_parameters_unpacked():
    plain = load_backbone(BackboneSpec("tiny"))
    for quantize, linear in LINEAR.items():
        backbone = load_backbone(BackboneSpec("tiny", quantize=quantize))
        query = backbone.model.roberta.encoder.layer[0].attention.self.query
        # quantised, and wrapped for LoRA again (a quantised load swaps the library's LoRA wrappers out)
        assert isinstance(query, linear) and isinstance(query, LoRALayer)
        assert backbone.num_parameters == plain.num_parameters
        assert backbone.fingerprint == plain.fingerprint  # embeddings are never quantised


@pytest.mark.parametrize("quantize", list(LINEAR), ids=lambda q: q.value)
@pytest.mark.parametrize("kind", ["bottleneck", "lora"], ids=lambda k: k)
def test_adapters_train_in_full_precision_on_a_quantised_backbone(tmp_path, quantize, kind):
    outcome = run(tmp_path, "q", kind, quantize)
    manifest = outcome.manifest
    assert manifest["backbone"]["quantize"] == quantize.value
    weights = load_file(str(outcome.path / "adapter.safetensors"))
    assert weights and all(t.dtype == torch.float32 for t in weights.values())
    plain = run(tmp_path / "plain", "q", kind)  # the same adapter on the unquantised backbone
    assert outcome.trainable.count == plain.trainable.count
    # zero-shot evaluation reloads the backbone quantised, as trained: the same dev score comes back
    evaluation = pipelines.evaluate("q", zoo=Zoo(tmp_path / "zoo"), langs=["en"], split="validation", max_examples=16)
    assert evaluation.scores["en"] == manifest["metrics"]["dev"]
    loaded, _, _ = pipelines.load_for_inference(outcome.path)
    assert isinstance(loaded.model.roberta.encoder.layer[0].output.dense, LINEAR[quantize])


def test_stack_and_fuse_on_a_4bit_backbone(tmp_path):
    for name in ("a", "b"):
        run(tmp_path, name, quantize=Quantize.NF4)
    for block, compose in (("stack", "Stack(a)"), ("fuse", "Fuse(a, b)")):
        outcome = run(tmp_path, block, quantize=Quantize.NF4, compose=compose)
        assert outcome.manifest["composition"]["block"] == block
        assert outcome.manifest["backbone"]["quantize"] == "4bit"


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16], ids=lambda p: p.value)
def test_mixed_precision_trains_fp32_weights(tmp_path, precision):
    outcome = run(tmp_path, "p", precision=precision)
    assert outcome.manifest["spec"]["train"]["precision"] == precision.value
    losses = [r["loss"] for r in outcome.result.log if r["kind"] == "step"]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    weights = load_file(str(outcome.path / "adapter.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())


def test_gradient_checkpointing_gives_the_same_adapter(tmp_path):
    plain = run(tmp_path / "plain", "g")
    checkpointed = run(tmp_path / "ckpt", "g", grad_checkpointing=True)
    a = load_file(str(plain.path / "adapter.safetensors"))
    b = load_file(str(checkpointed.path / "adapter.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert plain.manifest["history"][0]["train_loss"] == pytest.approx(checkpointed.manifest["history"][0]["train_loss"],
                                                                        rel=1e-5)


def test_a_full_fine_tune_cannot_be_quantised():
    with pytest.raises(ValueError, match="cannot be 4bit-quantised"):
        RunSpec(task="toy-tags", method=MethodSpec(kind="full"), backbone=BackboneSpec("tiny", quantize=Quantize.NF4))


def test_length_grouped_training_is_reproducible(tmp_path):
    first = run(tmp_path / "a", "l", group_by_length=True)
    second = run(tmp_path / "b", "l", group_by_length=True)
    assert first.manifest["spec"]["train"]["group_by_length"] is True
    assert first.manifest["history"] == second.manifest["history"]
    assert first.manifest["metrics"] == second.manifest["metrics"]


def _adapted(kind: str, quantize: Quantize = Quantize.NONE):
    from stepstone.methods import add_adapter

    backbone = load_backbone(BackboneSpec("tiny", quantize=quantize))
    model = backbone.model
    add_adapter(model, "a", MethodSpec(kind=kind))
    model.add_tagging_head("a", num_labels=3)
    model.train_adapter("a")
    model.set_active_adapters("a")
    return model, torch.randint(5, 100, (4, 9), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["bottleneck", "lora"], ids=lambda k: k)
def test_lowering_frozen_linears_is_exact(kind):
    """Autocast would cast the frozen weights to bf16 on every call; casting them once gives bitwise the
    same loss and adapter gradients, and the fp32 originals come back bitwise."""
    from stepstone.precision import autocast, frozen_linears_lowered

    model, ids = _adapted(kind)
    model.eval()  # no dropout: both passes must see the same network
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        with autocast(Precision.BF16, torch.device("cpu")):
            loss = model(input_ids=ids, labels=torch.ones_like(ids), head="a").loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = loss_and_grads()
    with frozen_linears_lowered(model, Precision.BF16) as lowered:
        assert lowered > 0 and model.roberta.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
        fast = loss_and_grads()
    assert fast[0] == plain[0] and fast[1].keys() == plain[1].keys() and plain[1]
    assert all(torch.equal(fast[1][n], plain[1][n]) for n in plain[1])
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_lowering_leaves_quantised_weights_and_fp32_runs_alone():
    from stepstone.precision import frozen_linears_lowered

    model, _ = _adapted("lora", Quantize.NF4)
    with frozen_linears_lowered(model, Precision.BF16) as lowered:
        assert lowered > 0  # heads, pooler, biases of quantised layers are not lowered: only float weights
        assert model.roberta.encoder.layer[0].attention.self.query.weight.dtype == torch.uint8
    with frozen_linears_lowered(model, Precision.FP32) as lowered:
        assert lowered == 0


def test_backbone_dropout_off_is_deterministic_and_restored():
    from stepstone.methods import backbone_dropout_off

    model, ids = _adapted("bottleneck")
    model.train()
    dropouts = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert any(dropouts.values())
    with backbone_dropout_off(model) as switched:
        assert switched > 0 and model.heads["a"][0].p == dropouts["heads.a.0"] > 0
        first, second = (model.roberta(input_ids=ids).last_hidden_state for _ in range(2))
        assert torch.equal(first, second)  # the head's own dropout stays (heads.a.0)
    assert dropouts == {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    first, second = (model.roberta(input_ids=ids).last_hidden_state for _ in range(2))
    assert not torch.equal(first, second)  # the backbone's dropout is back


def test_training_without_backbone_dropout(tmp_path):
    outcome = run(tmp_path, "d", precision=Precision.BF16, backbone_dropout=False)
    assert outcome.manifest["spec"]["train"]["backbone_dropout"] is False
    weights = load_file(str(outcome.path / "adapter.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())


def test_eager_attention_is_recorded_reloaded_and_computes_the_same(tmp_path):
    from stepstone.specs import Attention

    spec = RunSpec(task="toy-tags", name="e", backbone=BackboneSpec("tiny", attention=Attention.EAGER),
                   train=replace(TRAIN, backbone_dropout=False))
    outcome = pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs")
    assert outcome.manifest["backbone"]["attention"] == "eager"
    loaded, _, _ = pipelines.load_for_inference(outcome.path)
    assert loaded.model.config._attn_implementation == "eager"
    sdpa = load_backbone(BackboneSpec("tiny"))
    eager = load_backbone(BackboneSpec("tiny", attention=Attention.EAGER))
    assert type(sdpa.model.roberta.encoder.layer[0].attention.self) is not \
        type(eager.model.roberta.encoder.layer[0].attention.self)
    ids = torch.randint(5, 100, (3, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    with torch.no_grad():
        a, b = (m.model.roberta(input_ids=ids, attention_mask=mask).last_hidden_state for m in (sdpa, eager))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ---- several epochs with dev selection on every precision x quantisation cell (issue 13)
@pytest.mark.parametrize("precision", list(Precision), ids=lambda p: p.value)
@pytest.mark.parametrize("quantize", list(Quantize), ids=lambda q: q.value)
@pytest.mark.parametrize("kind", ["bottleneck", "lora"], ids=lambda k: k)
def test_dev_selection_between_epochs_changes_nothing_in_training(tmp_path, kind, quantize, precision):
    """Epoch 2 trains after a dev evaluation: it must see the backbone epoch 1 trained on. The same run
    without dev selection (no evaluation between the epochs) takes bitwise the same steps, and the saved
    best epoch scores on reload what it scored in training."""
    selected = run(tmp_path / "a", "m", kind, quantize, epochs=2, precision=precision)
    plain = run(tmp_path / "b", "m", kind, quantize, epochs=2, precision=precision, select_best=False)
    steps = [[(r["step"], r["epoch"], r["loss"]) for r in o.result.log if r["kind"] == "step"] for o in (selected, plain)]
    assert [e for _, e, _ in steps[0]] == [1, 1, 2, 2]  # 32 examples / batch 16, two epochs
    assert steps[0] == steps[1]
    assert [r["epoch"] for r in selected.result.log if r["kind"] == "dev"] == [1, 2]
    assert [r["epoch"] for r in plain.result.log if r["kind"] == "dev"] == [2]
    best = selected.manifest["metrics"]["best_epoch"]
    assert selected.manifest["metrics"]["dev"] == selected.manifest["history"][best - 1]["dev"]
    evaluation = pipelines.evaluate("m", zoo=Zoo(tmp_path / "a" / "zoo"), langs=["en"], split="validation",
                                    max_examples=16)
    assert evaluation.scores["en"] == selected.manifest["metrics"]["dev"]


@pytest.mark.parametrize("kind", ["bottleneck", "lora"], ids=lambda k: k)
def test_a_dev_pass_gives_the_4bit_layers_their_training_layout_back(kind):
    """The root cause of the epoch-2 crash: on an AVX512-BF16 CPU bitsandbytes repacks a 4-bit weight for
    its inference kernel on the first forward pass in eval mode without gradients, and never unpacks it;
    training through that kernel gets no input gradient and fails on its in-place bias add. `predict` on a
    model in training mode puts the original layout back: the next training step is bitwise the same."""
    from bitsandbytes.functional import has_avx512bf16

    from stepstone.evaluation import predict
    from stepstone.formats import handler_for
    from stepstone.tasks import Split, get_task
    from stepstone.tasks.examples import load_examples

    model, ids = _adapted(kind, Quantize.NF4)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    weights = [m.weight.data.clone() for m in layers]
    task = get_task("toy-tags")
    tokenizer = load_backbone(BackboneSpec("tiny")).tokenizer
    rows = handler_for(task).encode(load_examples(task, Split.VALIDATION, "en", None, 4), tokenizer, task, 32, 8,
                                    train=False)

    def step():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks
        loss = model(input_ids=ids, labels=torch.ones_like(ids), head="a").loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    before = step()
    predict(model, handler_for(task), rows, tokenizer, 4, head="a")
    assert model.training
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    assert all(torch.equal(m.weight.data, w) for m, w in zip(layers, weights))
    after = step()
    assert after[0] == before[0] and after[1].keys() == before[1].keys() and before[1]
    assert all(torch.equal(after[1][n], before[1][n]) for n in before[1])
    model.eval()  # a model that only evaluates keeps the inference layout (repacking per call would be slow)
    predict(model, handler_for(task), rows, tokenizer, 4, head="a")
    assert all(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers) == has_avx512bf16()
