"""Training modes are data (stepstone.training.modes): a mode registered outside the loop reaches it with
its own parameter groups and extra loss, and the loop's source names no mode."""
from __future__ import annotations

import inspect
import re

import pytest
import torch

from stepstone import methods
from stepstone.backbone import load_backbone
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.specs import BackboneSpec, MethodSpec, TrainSpec
from stepstone.tasks import get_task
from stepstone.training import (MODES, Layer, Mode, ParamGroup, TaskData, TrainingMode, register_mode, set_trainable,
                                train, trainable_names)
from stepstone.training import loop

torch.set_num_threads(1)
ADAMW = torch.optim.AdamW

SPEC = TrainSpec(epochs=1, batch_size=4, lr=1e-3, fusion_lr=7e-5, dev=False, select_best=False,
                 warmup_ratio=0.0).resolved("bottleneck")
EXTRA = 1000.0
WORDS = ("good", "bad", "fine", "awful", "great", "poor", "nice", "grim", "warm", "cold")


def toy_extra_loss(model) -> torch.Tensor:
    toy_extra_loss.models.append(model)
    return torch.tensor(EXTRA)


toy_extra_loss.models = []


@pytest.fixture(scope="module")
def toy_mode() -> TrainingMode:
    """A mode the loop has never heard of: the heads in their own group at train.fusion_lr, plus a constant loss."""
    name = "toy-heads-apart"
    if name not in MODES:  # module fixtures of a rerun in one process
        register_mode(TrainingMode(name, groups=(ParamGroup("lr"), ParamGroup("fusion_lr", ("heads",))),
                                   extra_loss=toy_extra_loss))
    return MODES.get(name)


def setup(mode: TrainingMode):
    """The tiny backbone with a bottleneck adapter and head "t" (the same weights every call), its
    trainable set under `mode`, and eight toy-sentiment rows."""
    backbone = load_backbone(BackboneSpec("tiny"))
    model, task = backbone.model, get_task("toy-sentiment")
    handler = handler_for(task)
    torch.manual_seed(0)
    methods.add_adapter(model, "t", MethodSpec(kind="bottleneck"))
    handler.add_head(model, "t", task)
    methods.activate(model, "t", head="t")
    trainable = set_trainable(model, trainable_names(model, mode, "t"), backbone.num_parameters)
    examples = [{"text": f"the {w} one is {WORDS[-1 - i]}", "label": task.labels[i % 2]} for i, w in enumerate(WORDS[:8])]
    rows = handler.encode(examples, backbone.tokenizer, task, 32, 16, train=True)
    return model, backbone.tokenizer, trainable, [TaskData(task, handler, "t", rows, [], [])]


def run(mode: TrainingMode, monkeypatch) -> tuple[list[dict], list[list[tuple[float, set[str]]]], object]:
    """Train one epoch in `mode`; the step log, the optimizer's groups as (lr, parameter names), the model."""
    model, tokenizer, trainable, parts = setup(mode)
    names = {id(p): n for n, p in model.named_parameters()}
    optimizers = []

    class Spy(ADAMW):
        def __init__(self, groups, **kwargs):
            super().__init__(groups, **kwargs)
            optimizers.append([(g["lr"], {names[id(p)] for p in g["params"]}) for g in self.param_groups])

    monkeypatch.setattr(torch.optim, "AdamW", Spy)
    torch.manual_seed(1)  # the same dropout masks in both runs
    result = train(model, parts, tokenizer, SPEC, mode, trainable)
    return [r for r in result.log if r["kind"] == "step"], optimizers, model


def test_a_registered_mode_reaches_the_loop_with_its_groups_and_extra_loss(toy_mode, monkeypatch):
    plain, plain_groups, _ = run(Mode.ADAPTER, monkeypatch)
    toy_extra_loss.models.clear()
    steps, groups, model = run(toy_mode, monkeypatch)
    assert len(steps) == len(plain) == 2
    assert steps[0]["loss"] == plain[0]["loss"] + EXTRA  # same weights, batch and dropout: only the extra loss
    assert all(s["loss"] > EXTRA for s in steps)
    assert len(toy_extra_loss.models) == 2 and all(m is model for m in toy_extra_loss.models)  # per micro-batch
    heads = {n for n, _ in model.named_parameters() if n.startswith("heads.t.")}
    adapter = {n for n, _ in model.named_parameters() if ".adapters.t." in n}
    assert len(heads) == 4 and len(adapter) == 8
    assert groups == [[(1e-3, adapter), (7e-5, heads)]]
    assert plain_groups == [[(1e-3, adapter | heads)]]


def test_modes_are_registered_by_their_manifest_names(toy_mode):
    assert (Mode.ADAPTER.value, Mode.FUSION.value, Mode.FULL.value) == ("adapter", "fusion", "full")
    assert [MODES.get(n) for n in ("adapter", "fusion", "full")] == [Mode.ADAPTER, Mode.FUSION, Mode.FULL]
    assert MODES.get("toy-heads-apart") is toy_mode
    with pytest.raises(StepstoneError, match=r"unknown training mode 'fusoin' \(valid: .*\bfusion\b.*\)"):
        MODES.get("fusoin")
    with pytest.raises(ValueError, match="training mode 'adapter' is already registered"):
        register_mode(TrainingMode("adapter"))
    assert Mode.FUSION.layer == Layer("adapter_fusion_layer", "fusion layer")
    assert [(g.lr, g.owners) for g in Mode.FUSION.groups] == [("lr", None), ("fusion_lr", ("adapter_fusion_layer",))]
    assert Mode.FUSION.extra_loss is methods.fusion_regularization
    assert (Mode.ADAPTER.extra_loss, Mode.FULL.extra_loss, Mode.FULL.every_parameter) == (None, None, True)


def test_a_mode_is_checked_when_declared():
    with pytest.raises(ValueError, match=r"parameter group lr 'adapter_lr' is not a TrainSpec learning rate "
                                         r"\(valid: \['fusion_lr', 'lr'\]\)"):
        ParamGroup("adapter_lr")
    with pytest.raises(ValueError, match="owners are None"):
        ParamGroup("lr", ())
    with pytest.raises(ValueError, match="exactly one parameter group takes the rest"):
        TrainingMode("two-rests", groups=(ParamGroup("lr"), ParamGroup("fusion_lr")))
    with pytest.raises(ValueError, match="exactly one parameter group takes the rest"):
        TrainingMode("no-rest", groups=(ParamGroup("lr", ("heads",)),))


def test_a_mode_with_a_layer_needs_its_name():
    model, *_ = setup(Mode.ADAPTER)
    mode = TrainingMode("toy-layer", layer=Layer("adapter_fusion_layer", "toy layer"))
    with pytest.raises(ValueError, match=r"^the toy-layer mode needs the toy layer's name$"):
        trainable_names(model, mode, "t")


def test_the_loop_names_no_mode():
    """Modes contribute through their fields; the loop's source names none of them, nor their parameter owners."""
    source = inspect.getsource(loop)
    for word in ("adapter", "fusion", "full", "lora", "lora_fusion", "adapter_fusion_layer"):
        assert not re.search(rf"\b{word}\b", source, re.IGNORECASE), word
    assert "fusion" not in source.lower() and not re.search(r"\bMode\b", source)
