"""Multi-task intermediate training (one adapter, a head per task) and evaluation on other tasks:
retrieval with any artifact or a bare backbone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stepstone import composition, pipelines
from stepstone.errors import StepstoneError
from stepstone.methods import BottleneckSpec
from stepstone.specs import MethodSpec, RunSpec, Sampling, TrainSpec
from stepstone.training import schedule
from stepstone.zoo import Zoo

FAST = TrainSpec(lr=5e-3, epochs=2, batch_size=16, max_train_examples=48, max_eval_examples=16)
SENTENCES = ["the cat sleeps", "a dog runs fast", "birds sing in spring", "we eat bread", "rain falls today",
             "my house is red"]


def test_proportional_schedule_takes_every_batch_once():
    plan = schedule([5, 2], [80, 20], TrainSpec(), torch.Generator().manual_seed(0))
    assert sorted(plan) == [0] * 5 + [1] * 2 and plan != sorted(plan)
    assert schedule([3], [40], TrainSpec(), torch.Generator().manual_seed(0)) == [0, 0, 0]


def test_temperature_schedule_flattens_the_mixture():
    spec = TrainSpec(sampling=Sampling.TEMPERATURE, temperature=1e9)
    plan = schedule([1000, 10], [16000, 160], spec, torch.Generator().manual_seed(0))
    assert len(plan) == 1010 and 400 < plan.count(1) < 610  # ~uniform, not 1%
    again = schedule([1000, 10], [16000, 160], spec, torch.Generator().manual_seed(0))
    assert plan == again


@pytest.fixture(scope="module")
def multitask(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt")
    zoo = Zoo(root / "zoo")
    spec = RunSpec(task=("toy-sentiment", "toy-tags"), name="mt", train=FAST,
                   method=MethodSpec(bottleneck=BottleneckSpec(reduction_factor=4)))
    return zoo, pipelines.train_run(spec, zoo=zoo)


def test_multitask_entry_has_one_adapter_and_a_head_per_task(multitask):
    zoo, outcome = multitask
    m = outcome.manifest
    assert [(t["name"], t["head"]) for t in m["tasks"]] == [("toy-sentiment", "mt"), ("toy-tags", "mt_toy-tags")]
    assert sorted(p.name for p in (outcome.path / "heads" / "toy-tags").iterdir()) == [
        "head_config.json", "model_head.safetensors"]
    adapter = 2 * (128 * 32 + 32 + 32 * 128 + 128)  # 2 layers, bottleneck 128 -> 32 -> 128
    heads = (128 * 128 + 128 + 128 * 2 + 2) + (128 * 5 + 5)  # classification (2 layers) + tagging (1 layer)
    assert outcome.trainable.count == adapter + heads
    assert m["data"]["by_task"] == {"toy-sentiment": {"train_features": 48, "dev_examples": 16},
                                    "toy-tags": {"train_features": 48, "dev_examples": 16}}
    assert m["history"][-1]["step"] == 2 * (3 + 3)  # 2 epochs x (48/16 batches per task)
    for task, head_metrics in m["metrics"]["dev_by_task"].items():
        again = pipelines.evaluate("mt", zoo=zoo, task=task, langs=["en"], split="validation", max_examples=16)
        assert again.scores["en"] == head_metrics
    assert m["metrics"]["dev"] == m["metrics"]["dev_by_task"]["toy-sentiment"]


def test_multitask_entry_composes_like_any_adapter(multitask, tmp_path):
    zoo, _ = multitask
    outcome = pipelines.train_run(RunSpec(task="toy-qa", name="qa-on-mt", train=FAST,
                                          compose=composition.parse("Stack(mt)")), zoo=zoo, runs_dir=tmp_path)
    assert outcome.manifest["composition"]["setup"] == "Stack(mt, qa-on-mt)"


def test_evaluating_a_task_without_a_head_is_refused(multitask):
    zoo, _ = multitask
    with pytest.raises(StepstoneError, match=r"'mt' has no head for task 'toy-qa' \(heads: toy-sentiment, toy-tags\)"):
        pipelines.evaluate("mt", zoo=zoo, task="toy-qa")


def write_retrieval_data(root: Path) -> Path:
    tatoeba = root / "target" / "tatoeba"
    tatoeba.mkdir(parents=True)
    (tatoeba / "tatoeba.deu-eng.deu").write_text("\n".join(SENTENCES) + "\n")
    (tatoeba / "tatoeba.deu-eng.eng").write_text("\n".join(SENTENCES) + "\n")
    bucc = root / "target" / "bucc2018"
    bucc.mkdir(parents=True)
    (bucc / "de-en.dev.de").write_text("".join(f"de-{i}\t{s}\n" for i, s in enumerate(SENTENCES[:4])))
    (bucc / "de-en.dev.en").write_text("".join(f"en-{i}\t{s}\n" for i, s in enumerate(SENTENCES)))
    (bucc / "de-en.dev.gold").write_text("".join(f"de-{i}\ten-{i}\n" for i in range(4)))
    return root


def test_retrieval_on_a_bare_backbone_and_with_adapters(multitask, tmp_path, monkeypatch):
    zoo, outcome = multitask
    data = write_retrieval_data(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    bare = pipelines.evaluate(None, backbone="tiny", task="tatoeba", langs=["de"], data_dir=data)
    # identical sentences on both sides embed identically: every nearest neighbour is right
    assert bare.scores == {"de": {"accuracy": 100.0, "layer": 1}}
    report = json.loads(bare.output.read_text())
    assert bare.output == Path("evaluations/tiny/tatoeba.test.json")
    assert report["retrieval"] == {"layer": 1, "pooling": "mean", "max_length": 128}
    mined = pipelines.evaluate("mt", zoo=zoo, task="bucc", langs=["de"], split="validation", data_dir=data, layer=2)
    assert mined.scores["de"]["f1"] == 100.0 and mined.scores["de"]["layer"] == 2
    assert mined.output == outcome.path / "evaluations" / "bucc.validation.json"


def test_evaluate_needs_a_run_or_a_backbone_and_task():
    with pytest.raises(StepstoneError, match="name a run or zoo entry to evaluate, or give --backbone and --task"):
        pipelines.evaluate(None, task="tatoeba")
    with pytest.raises(StepstoneError, match="a bare backbone has no head for task 'toy-tags'"):
        pipelines.evaluate(None, backbone="tiny", task="toy-tags")
