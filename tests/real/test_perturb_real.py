"""Robustness and domain shift on multilingual-e5-small with ../shared data: a short UD-POS run evaluated on real
test sentences (Latin, Cyrillic and Chinese script): rate 0 scores exactly the clean examples, typo 0.1 is
reproducible at a seed and hurts, and a language's file passed as --data-file scores exactly that language's
in-domain score."""
from __future__ import annotations

import shutil

import pytest

from stepstone import pipelines
from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec
from stepstone.zoo import Zoo

pytestmark = pytest.mark.real

TRAIN = TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_length=64, max_train_examples=128, max_eval_examples=32)
LANGS = ["es", "ru", "zh"]
EXAMPLES = 48


@pytest.fixture(scope="module")
def zoo(e5_backbone, shared_data, tmp_path_factory) -> Zoo:
    store = Zoo(tmp_path_factory.mktemp("perturb-real") / "zoo")
    pipelines.train_run(RunSpec(task="udpos", name="udpos", method=MethodSpec(kind="bottleneck"), train=TRAIN,
                                backbone=BackboneSpec(str(e5_backbone)), data_dir=shared_data),
                        zoo=store, runs_dir=store.root.parent / "runs")
    return store


def test_rate_zero_is_clean_and_typos_reproduce(zoo, shared_data, tmp_path):
    result = pipelines.evaluate("udpos", zoo=zoo, langs=LANGS, data_dir=shared_data, max_examples=EXAMPLES,
                                perturb=["typo:0", "typo:0.1"], perturb_seed=1, output=tmp_path / "a.json")
    assert result.perturbed["typo:0"] == result.scores
    again = pipelines.evaluate("udpos", zoo=zoo, langs=LANGS, data_dir=shared_data, max_examples=EXAMPLES,
                               perturb=["typo:0.1"], perturb_seed=1, output=tmp_path / "b.json")
    assert again.perturbed["typo:0.1"] == result.perturbed["typo:0.1"]
    assert result.perturbed["typo:0.1"] != result.scores
    main = result.metric
    mean_clean = sum(s[main] for s in result.scores.values()) / len(LANGS)
    mean_typo = sum(s[main] for s in result.perturbed["typo:0.1"].values()) / len(LANGS)
    assert mean_typo < mean_clean  # character noise costs accuracy


def test_a_shared_data_file_scores_its_languages_in_domain_score(zoo, shared_data, tmp_path):
    shutil.copy(shared_data / "target" / "udpos" / "test-ru.tsv", tmp_path / "ru-news.tsv")
    result = pipelines.evaluate("udpos", zoo=zoo, langs=["es", "ru"], data_dir=shared_data,
                                max_examples=EXAMPLES, data_file=tmp_path / "ru-news.tsv", data_lang="ru",
                                output=tmp_path / "d.json")
    assert result.domain["scores"] == result.scores["ru"] and result.domain["examples"] == EXAMPLES
    es, ru = (result.scores[lang][result.metric] for lang in ("es", "ru"))
    assert result.domain["in_domain"] == (es + ru) / 2 and result.domain["drop"] == pytest.approx((es - ru) / 2)
