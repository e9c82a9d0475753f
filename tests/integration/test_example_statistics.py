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
