"""Evaluating past the examples a run trained on (`skip_examples`): a target trained on the front of a validation
split and evaluated on that split (XNLI / PAWS-X dev here, parallel across languages) is scored on the examples
after the ones it saw, in every language; the grid does this for such targets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepstone import pipelines
from stepstone.errors import StepstoneError
from stepstone.experiments import GridSpec, Preset, TargetSpec, run_grid
from stepstone.experiments.cells import Setup
from stepstone.specs import MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples
from stepstone.zoo import Zoo

TRAIN = TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Zoo, Path]:
    zoo = Zoo(tmp_path_factory.mktemp("skip") / "zoo")
    pipelines.train_run(RunSpec(task="toy-sentiment", name="sent", method=MethodSpec(kind="bottleneck"), train=TRAIN),
                        zoo=zoo, runs_dir=zoo.root.parent / "runs")
    return zoo, zoo.path("sent")


def test_skipped_examples_are_left_out_before_the_limit(trained, tmp_path, monkeypatch):
    zoo, _ = trained
    seen = {}
    real = pipelines.evaluation._score_task

    def spy(loaded, task, head, examples, lang, *rest):
        seen[lang] = examples
        return real(loaded, task, head, examples, lang, *rest)

    monkeypatch.setattr(pipelines.evaluation, "_score_task", spy)
    result = pipelines.evaluate("sent", zoo=zoo, split="validation", max_examples=8, skip_examples=5,
                                output=tmp_path / "e.json")
    task = get_task("toy-sentiment")
    for lang in result.scores:
        assert seen[lang] == load_examples(task, Split.VALIDATION, lang, None)[5:13]
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["skipped_examples"] == 5 and set(report["examples"].values()) == {8}
    pipelines.evaluate("sent", zoo=zoo, split="validation", max_examples=8, output=tmp_path / "p.json")
    assert "skipped_examples" not in json.loads((tmp_path / "p.json").read_text())
    assert seen[next(iter(result.scores))] == load_examples(task, Split.VALIDATION, next(iter(result.scores)), None)[:8]


@pytest.mark.parametrize("kwargs, message", [
    ({"skip_examples": -1}, r"--skip-examples must be at least 0 \(got -1\)"),
    ({"skip_examples": 100000}, r"task 'toy-sentiment', validation split, language '\w+' has \d+ examples: none is "
                                r"left after skipping the first 100000"),
    ({"skip_examples": 3, "task": "tatoeba"}, "--skip-examples applies to trained tasks: 'tatoeba' is a retrieval"),
])
def test_bad_skips_are_refused(trained, tmp_path, kwargs, message):
    zoo, _ = trained
    with pytest.raises(StepstoneError, match=message):
        pipelines.evaluate("sent", zoo=zoo, split="validation", output=tmp_path / "e.json", **kwargs)
    assert not (tmp_path / "e.json").exists()


def test_the_grid_evaluates_a_validation_trained_target_past_its_training_examples(tmp_path):
    grid = GridSpec(intermediate=(), preset=Preset.TINY, seeds=(0,), methods=("bottleneck",), setups=(Setup.NONE,),
                    full_finetune=False, targets=(TargetSpec("toy-tags", train_split="validation", split="validation"),
                                                  TargetSpec("toy-sentiment", split="validation")))
    run_grid(grid, tmp_path / "g", isolate=False)
    tags = json.loads((tmp_path / "g" / "evaluations" / "target__toy-tags__bottleneck__none__seed0.json").read_text())
    sent = json.loads((tmp_path / "g" / "evaluations" / "target__toy-sentiment__bottleneck__none__seed0.json")
                      .read_text())
    assert tags["skipped_examples"] == 32  # the tiny preset trains on 32 examples
    assert "skipped_examples" not in sent  # trained on its train split: nothing of the validation split was seen
