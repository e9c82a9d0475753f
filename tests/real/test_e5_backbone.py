"""The real multilingual backbone (multilingual-e5-small, 118M, XLM-R architecture) loads and trains."""
from __future__ import annotations

import pytest

from stepstone.pipelines import evaluate, load_for_inference, train_run
from stepstone.specs import BackboneSpec, RunSpec, TrainSpec
from stepstone.zoo import Zoo

pytestmark = pytest.mark.real


def test_train_and_reload_adapter_on_e5(e5_backbone, tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    spec = RunSpec(task="toy-sentiment", name="e5-sent", backbone=BackboneSpec(str(e5_backbone)),
                   train=TrainSpec(lr=1e-3, epochs=1, batch_size=16, max_train_examples=64, max_eval_examples=32,
                                   select_best=False))
    outcome = train_run(spec, zoo=zoo)
    m = outcome.manifest
    # 12 layers x (down 384x24 + 24, up 24x384 + 384) + head (384x384 + 384, 384x2 + 2)
    assert outcome.trainable.count == 12 * (384 * 24 + 24 + 24 * 384 + 384) + (384 * 384 + 384 + 384 * 2 + 2)
    assert m["backbone"]["parameters"] == 117_654_528  # encoder + the untrained pooler
    assert m["data"] == {"dev_examples": 32, "train_examples": 64, "train_features": 64}
    assert m["history"][0]["step"] == 4
    backbone, manifest, task = load_for_inference(outcome.path)
    assert backbone.fingerprint == m["backbone"]["fingerprint"]
    again = evaluate("e5-sent", zoo=zoo, langs=["en"], split="validation", max_examples=32)
    assert again.scores["en"] == m["metrics"]["dev"]
