"""Sequential intermediate training on multilingual-e5-small with ../shared data: a small SST-2 bottleneck adapter,
then ANLI continuing it (`init_from` by zoo name, method and backbone taken from it): the ANLI adapter starts from
the SST-2 weights exactly, with a new 3-label head, and records the chain sst2 -> anli."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from stepstone import pipelines
from stepstone.pipelines import train as train_steps
from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec
from stepstone.zoo import Zoo

pytestmark = pytest.mark.real

# fast e5 settings (test_rank_real.py); ANLI has no train split in ../shared: it trains on the front of its
# validation split, and dev selection is off
TRAIN = TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_length=64, max_train_examples=64, max_eval_examples=32)


def test_anli_continues_a_real_sst2_adapter(e5_backbone, shared_data, tmp_path, monkeypatch):
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    pipelines.train_run(RunSpec(task="sst2", name="sst2-bottleneck", method=MethodSpec(kind="bottleneck"),
                                train=TRAIN, backbone=BackboneSpec(str(e5_backbone)), data_dir=shared_data),
                        zoo=zoo, runs_dir=runs)
    spec = pipelines.load_run_spec(None, {"task": ["anli"], "init_from": "sst2-bottleneck",
                                          "data_dir": str(shared_data), "train_split": "validation"},
                                   ["train.lr=5e-3", "train.epochs=1", "train.batch_size=16", "train.max_length=64",
                                    "train.max_train_examples=64", "train.max_eval_examples=32",
                                    "train.select_best=false"], zoo=zoo)
    assert spec.backbone.name == str(e5_backbone.resolve()) and spec.run_name == "anli-bottleneck"
    seen: dict = {}
    real = train_steps.train

    def spy(model, *args, **kwargs):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train_steps, "train", spy)
    outcome = pipelines.train_run(spec, zoo=zoo, runs_dir=runs)
    source = load_file(str(zoo.path("sst2-bottleneck") / "adapter.safetensors"))
    ours = {k.replace(".anli-bottleneck.", ".X."): v for k, v in seen["before"].items()
            if ".adapters.anli-bottleneck." in k}
    theirs = {k.replace(".sst2-bottleneck.", ".X."): v for k, v in source.items()}
    assert ours.keys() == theirs.keys() and len(ours) == 4 * 12  # 12 layers: down, up (weights and biases)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert seen["before"]["heads.anli-bottleneck.4.weight"].shape[0] == 3
    manifest = outcome.manifest
    assert manifest["chain"] == ["sst2", "anli"]
    assert manifest["init_from"] == {"path": str(zoo.path("sst2-bottleneck")), "name": "sst2-bottleneck"}
    trained = load_file(str(outcome.path / "adapter.safetensors"))
    assert any(not torch.equal(trained[k.replace(".X.", ".anli-bottleneck.")], theirs[k]) for k in theirs)
