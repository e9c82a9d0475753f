"""`stepstone rank` on multilingual-e5-small with ../shared data: a tagging, a sentence-pair classification and a
multiple-choice target, two real intermediate adapters (UD-POS, SST-2)."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from stepstone import pipelines
from stepstone.errors import StepstoneError
from stepstone.ranking import NONE, Estimator, rank
from stepstone.ranking.proxy import PROXY_TRAIN
from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec
from stepstone.zoo import Zoo

pytestmark = pytest.mark.real

EXAMPLES = 64
TRAIN = TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_length=64, max_train_examples=EXAMPLES, max_eval_examples=32)
ESTIMATE = replace(PROXY_TRAIN, max_length=64, max_eval_examples=32)


@pytest.fixture(scope="module")
def zoo(e5_backbone, shared_data, tmp_path_factory) -> Zoo:
    store = Zoo(tmp_path_factory.mktemp("rank-real") / "zoo")
    for task in ("udpos", "sst2"):
        pipelines.train_run(RunSpec(task=task, name=f"bn-{task}", method=MethodSpec(kind="bottleneck"), train=TRAIN,
                                    backbone=BackboneSpec(str(e5_backbone)), data_dir=shared_data),
                            zoo=store, runs_dir=store.root.parent / "runs")
    return store


@pytest.mark.parametrize("target,split", [("udpos", "train"), ("xnli", "validation"), ("copa", "train")])
def test_rank_scores_every_candidate_on_real_data(zoo, shared_data, target, split):
    result = rank(target, zoo=zoo, estimators=[Estimator.LOGME, Estimator.SEMB], examples=EXAMPLES,
                  data_dir=shared_data, train_split=split, train=ESTIMATE)
    assert [r.candidate for r in result.rows] == [NONE, "bn-sst2", "bn-udpos"]
    assert result.examples == EXAMPLES and result.notes == ()
    for row in result.rows:
        assert math.isfinite(row.value("logme"))
        assert (row.value("semb") is None) == (row.candidate == NONE)
    similarity = {r.candidate: r.value("semb") for r in result.rows[1:]}
    assert all(0.0 < v <= 1.0 + 1e-9 for v in similarity.values())
    if target == "udpos":  # the UD-POS adapter trained on exactly these 64 sentences: the same texts
        assert similarity["bn-udpos"] == pytest.approx(1.0, abs=1e-9)
        assert result.on("semb") == "Stack(bn-udpos)"


def test_more_examples_than_the_data_is_refused(zoo, shared_data):
    with pytest.raises(StepstoneError, match="asked for 1000 examples, but task 'copa' has 400 English train examples"):
        rank("copa", zoo=zoo, examples=1000, data_dir=shared_data, train=ESTIMATE)
