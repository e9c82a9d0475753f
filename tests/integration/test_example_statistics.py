"""Per-example statistics of an evaluation (issue 18's confidence intervals): for every task format, the statistics
of each language (clean and perturbed) sum to exactly the score it reports, and the grid records them in
cells.jsonl, where they decode to the same."""
from __future__ import annotations

import numpy as np
import pytest

from stepstone import pipelines
from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, load_records, run_grid
from stepstone.experiments import stats
from stepstone.metrics import Metric
from stepstone.specs import MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import get_task
from stepstone.zoo import Zoo

TRAIN = TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16)


def summed(metric: Metric, rows: np.ndarray) -> float:
    return float(stats.METRICS[metric.statistic](rows.sum(axis=0)))


@pytest.mark.parametrize("task", ["toy-sentiment", "toy-pair", "toy-choice", "toy-tags", "toy-qa"])
def test_every_format_scores_its_statistics_exactly(task, tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    pipelines.train_run(RunSpec(task=task, name="run", method=MethodSpec(kind="bottleneck"), train=TRAIN),
                        zoo=zoo, runs_dir=tmp_path / "runs")
    perturb = ("typo:0.3",) if get_task(task).format.value != "qa" else ()
    evaluation = pipelines.evaluate("run", zoo=zoo, split="validation", max_examples=12, perturb=perturb,
                                    output=tmp_path / "e.json")
    metric = get_task(task).metric
    assert sorted(evaluation.statistics) == sorted(evaluation.scores)
    for lang, rows in evaluation.statistics.items():
        assert rows.shape[0] == 12
        assert summed(metric, rows) == pytest.approx(evaluation.scores[lang][metric.main], rel=1e-12)
    for label, by_lang in evaluation.perturbed_statistics.items():
        for lang, rows in by_lang.items():
            assert summed(metric, rows) == pytest.approx(evaluation.perturbed[label][lang][metric.main], rel=1e-12)


def test_the_grid_records_the_statistics_of_every_trained_target(tmp_path):
    spec = GridSpec(intermediate=("toy-sentiment",), preset=Preset.TINY, seeds=(0,), methods=("bottleneck",),
                    setups=(Setup.NONE, Setup.STACK), full_finetune=False, perturb=("typo:0.2",),
                    targets=(TargetSpec("toy-tags"), TargetSpec("toy-pair")))
    assert run_grid(spec, tmp_path / "g", isolate=False).failed == []
    records = load_records(tmp_path / "g" / CELLS)
    trained = [r for r in records.values() if r.get("kind") == "target"]
    assert len(trained) == 4
    for record in trained:
        metric = get_task(record["target"]).metric
        block = record["statistics"]
        assert block["statistic"] == metric.statistic and sorted(block["scores"]) == sorted(record["scores"])
        for lang, text in block["scores"].items():
            assert summed(metric, stats.decode(text)) == pytest.approx(record["scores"][lang], rel=1e-12)
        for lang, text in block["perturbed"]["typo:0.2"].items():
            assert summed(metric, stats.decode(text)) == pytest.approx(record["perturbed"]["typo:0.2"][lang],
                                                                       rel=1e-12)


def test_perturbed_examples_left_as_they_were_are_not_scored_again(tmp_path, monkeypatch):
    """A code-switching lexicon that has none of a language's words leaves its examples as they were: the clean
    scores (and statistics) stand for the perturbed ones, without a second pass over the model."""
    zoo = Zoo(tmp_path / "zoo")
    pipelines.train_run(RunSpec(task="toy-sentiment", name="run", method=MethodSpec(kind="bottleneck"), train=TRAIN),
                        zoo=zoo, runs_dir=tmp_path / "runs")
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("zzzunseen\tword\n")
    calls = []
    real = pipelines.evaluation._score_task

    def spy(loaded, task, head, examples, lang, *rest):
        calls.append(lang)
        return real(loaded, task, head, examples, lang, *rest)

    monkeypatch.setattr(pipelines.evaluation, "_score_task", spy)
    label = f"codeswitch:{lexicon}:0.5"
    evaluation = pipelines.evaluate("run", zoo=zoo, split="validation", max_examples=12, perturb=(label, "typo:0.5"),
                                    output=tmp_path / "e.json")
    langs = list(evaluation.scores)
    assert calls == langs * 2  # clean, then typo; codeswitch changed nothing
    assert evaluation.perturbed[label] == evaluation.scores
    assert all(evaluation.perturbed_statistics[label][lang] is evaluation.statistics[lang] for lang in langs)
