"""Example limits: a dev set held out of the validation split a task trains on; a smaller BUCC problem."""
from __future__ import annotations

import pytest

from stepstone.errors import StepstoneError
from stepstone.pipelines.train import _dev_examples
from stepstone.specs import TrainSpec
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import BUCC_DISTRACTORS, limit_bucc, load_examples


def test_training_on_validation_holds_out_its_end_as_dev():
    task = get_task("toy-sentiment")
    full = load_examples(task, Split.VALIDATION, "en")
    n = len(full)
    assert _dev_examples(task, Split.VALIDATION, n - 5, None, TrainSpec(max_eval_examples=2)) == full[-2:]
    assert _dev_examples(task, Split.VALIDATION, n - 5, None, TrainSpec()) == full[-5:]
    assert _dev_examples(task, Split.VALIDATION, n, None, TrainSpec(dev=False, select_best=False)) == []
    with pytest.raises(StepstoneError, match=f"trains on its whole validation split \\({n} examples\\)"):
        _dev_examples(task, Split.VALIDATION, n, None, TrainSpec())


def test_training_on_train_uses_the_validation_split():
    task = get_task("toy-sentiment")
    dev = _dev_examples(task, Split.TRAIN, 10, None, TrainSpec(max_eval_examples=3))
    assert dev == load_examples(task, Split.VALIDATION, "en")[:3]


def test_limit_bucc_keeps_gold_pairs_and_distractors_in_file_order():
    source = {f"s{i}": f"src {i}" for i in range(40)}
    target = {f"t{i}": f"tgt {i}" for i in range(50)}
    gold = [("s30", "t45"), ("s2", "t3"), ("s7", "t9")]
    small = limit_bucc({"source": source, "target": target, "gold": gold}, 2)
    assert small["gold"] == [("s30", "t45"), ("s2", "t3")]
    assert len(small["source"]) == len(small["target"]) == 2 + 2 * BUCC_DISTRACTORS
    assert list(small["source"])[:4] == ["s0", "s1", "s2", "s3"] and "s30" in small["source"]
    assert "s7" in small["source"]  # a sentence of a dropped pair may stay, as a distractor
    assert all(small["target"][k] == target[k] for k in small["target"])
    assert limit_bucc({"source": source, "target": target, "gold": gold}, 100)["source"] == source
