"""Issue 17 part 3: AdapterDrop (`method.<kind>.leave_out`), the frozen-layer cache
(`train.cache_frozen_layers`) and `train.compile`, on the tiny backbone (2 layers: leave_out 1 leaves layer 0
and the embeddings frozen)."""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepstone import pipelines
from stepstone.backbone import load_backbone
from stepstone.checkpoint import Checkpoints
from stepstone.composition import parse
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.methods import BottleneckSpec, HoulsbySpec, IA3Spec, LoRASpec, add_adapter, backbone_dropout_off
from stepstone.precision import autocast
from stepstone.specs import BackboneSpec, MethodSpec, Precision, RunSpec, TrainSpec
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples
from stepstone.training.frozen import FrozenLayerCache, first_adapted_layer
from stepstone.zoo import Zoo

torch.set_num_threads(1)
TRAIN = TrainSpec(epochs=2, batch_size=8, max_train_examples=40, max_eval_examples=16, lr=5e-3,
                  backbone_dropout=False)
SETTINGS = {"bottleneck": BottleneckSpec, "lora": LoRASpec, "houlsby": HoulsbySpec, "ia3": IA3Spec}


def method(kind: str = "bottleneck", leave_out: int = 1) -> MethodSpec:
    return MethodSpec(kind=kind, **{kind: SETTINGS[kind](leave_out=leave_out)})


def spec(name: str, cache: bool, tasks: tuple[str, ...] = ("toy-tags",), kind: str = "bottleneck",
         leave_out: int = 1, compose: str | None = None, **train) -> RunSpec:
    return RunSpec(task=list(tasks), name=name, method=method(kind, leave_out), backbone=BackboneSpec("tiny"),
                   train=replace(TRAIN, cache_frozen_layers=cache, **train), compose=parse(compose) if compose else None)


def trained(where: Path, run: RunSpec, zoo: Zoo | None = None):
    return pipelines.train_run(run, zoo=zoo or Zoo(where / "zoo"), runs_dir=where / "runs")


def weights(outcome) -> dict[str, torch.Tensor]:
    files = sorted(outcome.path.rglob("*.safetensors"))
    return {f"{f.relative_to(outcome.path)}:{k}": t for f in files for k, t in load_file(str(f)).items()}


def assert_close(cached, plain, noisy: tuple[str, ...] = ()) -> None:
    """The same training up to float rounding: losses, dev scores, trained weights. `noisy`: weights whose
    gradient is 0 up to rounding (a QA head's biases: the softmax over positions sums to 1, as does the
    target; a multiple-choice head's last bias, added to every choice's score alike), which AdamW turns into
    steps of +-lr whatever the rounding: compared by name and shape only. The rest within 1e-3 of each tensor's
    largest value: AdamW divides by the gradient's running size, so a summation-order difference (another CPU's
    kernels: ~1e-7 of a gradient) in a near-zero gradient element grows to ~1e-4 of the weights."""
    wa, wb = weights(cached), weights(plain)
    assert wa.keys() == wb.keys() and wa
    assert all(wa[k].shape == wb[k].shape for k in wa)
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=max(1e-6, 1e-3 * wb[k].abs().max().item()))
               for k in wa if not k.endswith(noisy))
    losses = [[r["loss"] for r in o.result.log if r["kind"] == "step"] for o in (cached, plain)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and len(losses[0]) > 2
    assert cached.manifest["metrics"]["dev"] == pytest.approx(plain.manifest["metrics"]["dev"], rel=1e-6)


# ---------------------------------------------------------------------------------------- one forward / backward
def _model(kind: str, task_name: str):
    backbone = load_backbone(BackboneSpec("tiny"))
    model, task = backbone.model, get_task(task_name)
    handler = handler_for(task)
    add_adapter(model, "a", method(kind))
    handler.add_head(model, "a", task)
    model.train_adapter("a")
    model.set_active_adapters("a")
    rows = handler.encode(load_examples(task, Split.TRAIN, "en", None, 6), backbone.tokenizer, task, 64, 16,
                          train=True)[:6]
    return model, rows, handler.collate(rows, backbone.tokenizer)


def _loss_and_grads(model, batch, cache, rows, precision=Precision.FP32):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the head's own dropout: the same masks
    with autocast(precision, torch.device("cpu")), (cache.feeding(rows, batch) if cache else nullcontext()):
        loss = model(**batch, head="a").loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind, task", [("bottleneck", "toy-tags"), ("bottleneck", "toy-sentiment"),
                                        ("bottleneck", "toy-qa"), ("bottleneck", "toy-choice"), ("lora", "toy-tags"),
                                        ("houlsby", "toy-qa"), ("ia3", "toy-choice")], ids=lambda v: v)
def test_the_cached_forward_equals_the_full_one(kind, task):
    """Loss and every trainable gradient match the uncached forward (QA scores padded positions too; a
    multiple-choice row is several sequences), and layer 0 runs only when the rows are first seen."""
    model, rows, batch = _model(kind, task)
    calls = []
    model.base_model.encoder.layer[0].register_forward_hook(lambda *a: calls.append(1))
    model.train()
    with backbone_dropout_off(model):
        plain = _loss_and_grads(model, batch, None, rows)
        cache = FrozenLayerCache.of(model)
        assert cache.k == 1 and len(calls) == 1
        first = _loss_and_grads(model, batch, cache, rows)
        assert len(calls) == 2  # the rows' first batch fills the cache
        again = _loss_and_grads(model, batch, cache, rows)
        assert len(calls) == 2  # then layer 0 never runs again
    assert len(model.base_model.encoder.layer) == 2  # the full encoder is back after each forward
    for value in (first, again):
        assert value[0] == pytest.approx(plain[0], rel=1e-6, abs=1e-7)
        assert value[1].keys() == plain[1].keys() and plain[1]
        # within 1e-5 of each gradient's largest element (or 1e-7): summation order (the CPU's kernels) moves
        # fp32 gradients by ~1e-6 of their scale, which an absolute 1e-7 alone does not allow for small elements
        assert all(torch.allclose(value[1][n], plain[1][n], rtol=1e-5,
                                  atol=max(1e-7, 1e-5 * plain[1][n].abs().max().item())) for n in plain[1])
    assert not any(n.startswith("roberta.encoder.layer.0.") for n in plain[1])  # the backward stops above layer 0


def test_the_cached_forward_under_bf16():
    model, rows, batch = _model("bottleneck", "toy-tags")
    model.train()
    with backbone_dropout_off(model):
        plain = _loss_and_grads(model, batch, None, rows, Precision.BF16)
        cached = _loss_and_grads(model, batch, FrozenLayerCache.of(model), rows, Precision.BF16)
    assert cached[0] == pytest.approx(plain[0], rel=1e-3)
    assert all(torch.allclose(cached[1][n], plain[1][n], rtol=2e-2, atol=1e-4) for n in plain[1])


def test_the_first_adapted_layer_comes_from_the_model():
    model, _, _ = _model("bottleneck", "toy-tags")
    assert first_adapted_layer(model) == (1, "layer 1 holds output.adapters.a.adapter_down.0.weight")
    model.base_model.embeddings.word_embeddings.weight.requires_grad_(True)  # a setting cannot say this
    assert first_adapted_layer(model) == (0, "embeddings.word_embeddings.weight")
    with pytest.raises(StepstoneError, match=r"^train.cache_frozen_layers: nothing to cache: the backbone's "
                                             r"embeddings.word_embeddings.weight"):
        FrozenLayerCache.of(model)


# ---------------------------------------------------------------------------------------- training runs
@pytest.mark.parametrize("settings", [
    dict(),
    dict(grad_accum=2, group_by_length=True),
    dict(precision=Precision.BF16),
    dict(tasks=("toy-tags", "toy-sentiment")),
    dict(tasks=("toy-qa",), kind="lora"),
    dict(tasks=("toy-choice",), grad_checkpointing=True),
], ids=["plain", "accum-grouped", "bf16", "multi-task", "qa-lora", "choice-checkpointing"])
def test_a_cached_run_trains_as_an_uncached_one(tmp_path, settings):
    plain = trained(tmp_path / "a", spec("m", False, **settings))
    cached = trained(tmp_path / "b", spec("m", True, **settings))
    if settings.get("precision") is Precision.BF16:  # bf16 rounding: the same run, not the same bits
        assert cached.manifest["history"][-1]["train_loss"] == pytest.approx(
            plain.manifest["history"][-1]["train_loss"], rel=2e-2)
        return
    noisy = {("toy-qa",): ("heads.m.1.bias",), ("toy-choice",): ("heads.m.4.bias",)}
    assert_close(cached, plain, noisy=noisy.get(settings.get("tasks"), ()))
    assert cached.manifest["spec"]["train"]["cache_frozen_layers"] is True
    assert "cache_frozen_layers" not in plain.manifest["spec"]["train"]


def test_the_frozen_layers_run_in_the_first_epoch_only(tmp_path, monkeypatch):
    calls: list[int] = []
    make = FrozenLayerCache.__init__

    def counting(self, model, k):
        make(self, model, k)
        model.base_model.encoder.layer[0].register_forward_hook(lambda *a: calls.append(1))

    monkeypatch.setattr(FrozenLayerCache, "__init__", counting)
    outcome = trained(tmp_path, spec("m", True, epochs=3, dev=False, select_best=False))
    assert outcome.result.steps == 15  # 40 rows / batch 8, 3 epochs
    assert len(calls) == 5  # one batch of the frozen bottom per batch of epoch 1, none after


@pytest.mark.parametrize("block", ["Stack(z)", "Fuse(z, y)"])
def test_a_composition_of_zoo_adapters_with_leave_out(tmp_path, block):
    """Zoo members with leave_out stay out of the cached bottom (frozen, dropout off); a Fuse layer in a layer
    none of its members is in never runs (the adapters library adds one to every layer)."""
    zoo = Zoo(tmp_path / "zoo")
    for member in ("z", "y"):
        trained(tmp_path, spec(member, False), zoo)
    plain = trained(tmp_path / "a", spec("t", False, compose=block), zoo)
    cached = trained(tmp_path / "b", spec("t", True, compose=block), zoo)
    assert_close(cached, plain)


def test_a_zoo_member_in_the_lowest_layer_is_refused(tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    trained(tmp_path, spec("z", False, leave_out=0), zoo)
    with pytest.raises(StepstoneError, match=r"^train.cache_frozen_layers: nothing to cache: the backbone's "
                                             r"layer 0 holds output.adapters.z.adapter_down.0.weight"):
        trained(tmp_path, spec("t", True, compose="Stack(z)"), zoo)
    assert not (tmp_path / "runs" / "t").exists()


def test_distributed_training_is_refused(tmp_path, monkeypatch):
    """Before anything loads (a launcher's WORLD_SIZE), and in the loop (the processes it trains with)."""
    from stepstone.training.loop import _frozen_layer_cache

    class TwoProcesses:
        world = 2

    message = (r"^train.cache_frozen_layers runs in one process only \(2 were launched\): launch without accelerate, "
               r"or set train.cache_frozen_layers=false$")
    with pytest.raises(StepstoneError, match=message):
        _frozen_layer_cache(None, spec("m", True).train, TwoProcesses())
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(StepstoneError, match=message):
        trained(tmp_path, spec("m", True))
    assert not (tmp_path / "zoo").exists() and not (tmp_path / "runs").exists()


class Stop(Exception):
    """Stands for the process dying right after a checkpoint."""


def test_a_resumed_cached_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    """The cache is not in the checkpoint: the resumed run rebuilds it."""
    run = spec("m", True, checkpoint_every=3)
    whole = trained(tmp_path / "a", run)
    save = Checkpoints.save

    def save_then_stop(self, state):
        path = save(self, state)
        if state.step == 6:  # mid-epoch 2: the resumed run's cache starts empty there
            raise Stop
        return path

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoints, "save", save_then_stop)
        with pytest.raises(Stop):
            trained(tmp_path / "b", run)
    resumed = pipelines.train_run(run, zoo=Zoo(tmp_path / "b" / "zoo"), runs_dir=tmp_path / "b" / "runs", resume=True)
    assert_close(resumed, whole)


# ---------------------------------------------------------------------------------------- leave_out
@pytest.mark.parametrize("kind", ["bottleneck", "lora", "houlsby", "ia3"])
def test_leave_out_saves_no_adapter_in_the_lowest_layers_and_loads_back(tmp_path, kind):
    outcome = trained(tmp_path, spec("m", False, kind=kind, epochs=1))
    names = list(load_file(str(outcome.path / "adapter.safetensors")))
    assert names and not any(".layer.0." in n for n in names) and all(".layer.1." in n for n in names)
    assert json.loads((outcome.path / "adapter_config.json").read_text())["config"]["leave_out"] == [0]
    assert outcome.manifest["method"]["settings"]["leave_out"] == 1
    assert outcome.manifest["spec"]["method"][kind]["leave_out"] == 1
    evaluation = pipelines.evaluate("m", zoo=Zoo(tmp_path / "zoo"), langs=["en"], split="validation",
                                    max_examples=16)
    assert evaluation.scores["en"] == outcome.manifest["metrics"]["dev"]


def test_the_default_leaves_configs_and_manifests_as_they_were(tmp_path):
    outcome = trained(tmp_path, RunSpec(task="toy-tags", name="m", train=replace(TRAIN, epochs=1)))
    assert "leave_out" not in outcome.manifest["method"]["settings"]
    assert "leave_out" not in outcome.manifest["spec"]["method"]["bottleneck"]
    assert not {"cache_frozen_layers", "compile"} & outcome.manifest["spec"]["train"].keys()
    config = (outcome.path / "config.yaml").read_text()
    assert "leave_out" not in config and "cache_frozen_layers" not in config and "compile" not in config


def test_leave_out_must_leave_a_layer_with_an_adapter(tmp_path):
    with pytest.raises(StepstoneError, match=r"^method.lora.leave_out is 2, but the backbone has 2 layers: no layer "
                                             r"would hold an adapter; use 0 to 1$"):
        trained(tmp_path, spec("m", False, kind="lora", leave_out=2))
    assert not (tmp_path / "zoo" / "m").exists()


# ---------------------------------------------------------------------------------------- compile
@pytest.mark.slow
def test_a_compiled_cached_run_trains_as_an_eager_one(tmp_path):
    """torch.compile on tiny (~30 s cold on this CPU): the same training up to float rounding, and the saved
    weights carry the model's own names (no `_orig_mod.`)."""
    plain = trained(tmp_path / "a", spec("m", True))
    compiled = trained(tmp_path / "b", spec("m", True, compile=True))
    assert_close(compiled, plain)
    assert compiled.manifest["spec"]["train"]["compile"] is True


def test_compile_wraps_the_training_forward_only(tmp_path, monkeypatch):
    """A stand-in for torch.compile (a real compile is the slow test above): it receives the model with
    dynamic=True, the training steps go through it, evaluation does not."""
    seen: list = []

    def stand_in(module, dynamic):
        seen.append((type(module).__name__, dynamic))

        def forward(**batch):
            seen.append("train")
            return module(**batch)
        return forward

    monkeypatch.setattr(torch, "compile", stand_in)
    outcome = trained(tmp_path, spec("m", True, compile=True, epochs=1))
    assert seen[0] == ("XLMRobertaAdapterModel", True)
    assert seen.count("train") == outcome.result.steps == 5


@pytest.mark.parametrize("where", ["compile", "forward"])
def test_a_compile_failure_is_one_line(tmp_path, monkeypatch, where):
    from torch._dynamo.exc import BackendCompilerFailed, TorchDynamoException

    def fail(*args, **kwargs):
        raise TorchDynamoException("backend 'inductor' raised:\nCppCompileError: C++ compile error")

    def compiled(module, dynamic):
        return fail

    monkeypatch.setattr(torch, "compile", fail if where == "compile" else compiled)
    with pytest.raises(StepstoneError, match=r"^train.compile: torch.compile failed \(TorchDynamoException: backend "
                                             r"'inductor' raised:\); set train.compile=false to train without it$"):
        trained(tmp_path, spec("m", False, compile=True))
    assert BackendCompilerFailed.__mro__.count(TorchDynamoException) == 1  # the kind inductor failures raise
    assert not (tmp_path / "zoo" / "m").exists()
