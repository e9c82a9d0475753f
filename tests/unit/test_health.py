"""The did-it-learn rule (stepstone.health) on hand-made loss curves, dev scores and dev sets."""
from __future__ import annotations

import math

import numpy as np
import pytest

from stepstone import health
from stepstone.formats import handler_for
from stepstone.health import Baseline, Verdict, baseline, judge
from stepstone.tasks import get_task

BINARY = Baseline("accuracy", chance=50.0, majority=51.0, prior_loss=math.log(2), dev_labels=200)
MARGIN = 2 * 100 * math.sqrt(0.51 * 0.49 / 200)  # two standard errors of a constant predictor: 7.07 points
LEARNED = [0.70 - 0.01 * i for i in range(40)]  # 0.70 -> 0.31 over 40 steps
FLAT = [0.696, 0.690] * 20  # 40 steps around ln 2


def test_a_run_that_learned():
    got = judge(LEARNED, 85.0, BINARY)
    assert got.verdict is Verdict.LEARNED and got.reasons == ()
    # windows of min(10, 40 // 4) = 10 steps at each end
    assert (got.loss_start, got.loss_end, got.steps) == (pytest.approx(0.655), pytest.approx(0.355), 40)
    assert got.record() == {"verdict": "learned", "reason": None, "metric": "accuracy", "dev": 85.0, "chance": 50.0,
                            "majority": 51.0, "level": 51.0, "margin": MARGIN, "prior_loss": math.log(2),
                            "loss_start": pytest.approx(0.655), "loss_end": pytest.approx(0.355), "steps": 40}


def test_a_flat_loss_is_not_learning_where_no_dev_score_says_otherwise():
    got = judge(FLAT, None, BINARY)
    assert got.verdict is Verdict.NOT_LEARNED
    assert got.reasons == ("the training loss never left its starting value (0.693 -> 0.693 over 40 steps)",)
    assert judge(FLAT, 60.0, Baseline("f1")).verdict is Verdict.NOT_LEARNED  # a dev score without a baseline
    # a dev score clearly above the baseline is held-out evidence: it decides over a slow-moving loss
    assert judge(FLAT, 60.0, BINARY).verdict is Verdict.LEARNED


def test_a_dev_score_at_the_majority_class_is_not_learning():
    assert BINARY.margin == pytest.approx(7.07, abs=0.01)
    got = judge(LEARNED, 57.0, BINARY)
    assert got.verdict is Verdict.NOT_LEARNED
    # a loss that fell says the run fit its training data: the reason says so (HellaSwag here: trained on
    # ActivityNet, its dev set WikiHow)
    assert got.reasons == ("English dev accuracy 57.0 is within 7.1 points of the baseline (chance 50.0 / majority "
                           "class 51.0)", "yet its training loss fell (0.655 -> 0.355 over 40 steps): it fit its "
                           "training data but not the dev set, which may differ from it (another domain) or it "
                           "overfit")
    assert judge(LEARNED, 51.0 + MARGIN, BINARY).verdict is Verdict.NOT_LEARNED  # the margin's edge is the baseline
    assert judge(LEARNED, 51.0 + MARGIN + 0.01, BINARY).verdict is Verdict.LEARNED
    # where the dev rule flags a run, the loss rule's finding is added to the reason
    both = judge(FLAT, 50.0, BINARY).record()
    assert both["reason"] == ("English dev accuracy 50.0 is within 7.1 points of the baseline (chance 50.0 / "
                              "majority class 51.0); the training loss never left its starting value (0.693 -> "
                              "0.693 over 40 steps)")


def test_the_dev_margin_is_two_standard_errors_and_at_least_one_point():
    assert (health.DEV_Z, health.DEV_MARGIN) == (2.0, 1.0)
    three = Baseline("accuracy", 100 / 3, 35.0, dev_labels=100)
    assert three.margin == pytest.approx(2 * 100 * math.sqrt(0.35 * 0.65 / 100))  # 9.54: the level's spread
    assert Baseline("accuracy", 100 / 17, 20.0, dev_labels=50_000).margin == 1.0  # thousands of tagged words
    assert Baseline("f1", None, 0.0, dev_labels=500).margin == 1.0  # F1 0 (all 'O'): no spread
    assert Baseline("f1").margin is None

def test_a_loss_that_fell_to_the_label_prior_is_not_learning():
    # a fresh head starts far above ln 2, then learns the class frequencies and nothing more
    curve = [2.0] * 10 + [0.70] * 30
    got = judge(curve, None, BINARY)
    assert got.verdict is Verdict.NOT_LEARNED and (got.loss_start, got.loss_end) == (2.0, pytest.approx(0.70))
    assert got.reasons == ("the training loss stayed at the label-prior level (0.700; predicting the label "
                           "frequencies alone scores 0.693)",)
    assert judge([2.0] * 10 + [0.60] * 30, None, BINARY).verdict is Verdict.LEARNED  # below 95% of ln 2


def test_the_flat_loss_threshold_is_five_percent_of_the_start():
    assert health.FLAT_LOSS == 0.05
    base = Baseline("f1")  # QA: no chance, no majority, no prior: the loss rule alone
    assert judge([1.0] * 10 + [0.951] * 30, 70.0, base).verdict is Verdict.NOT_LEARNED
    assert judge([1.0] * 10 + [0.949] * 30, 70.0, base).verdict is Verdict.LEARNED


def test_short_runs_and_missing_dev_data():
    short = FLAT[:health.MIN_LOSS_STEPS - 1]
    assert judge(short, None, BINARY).verdict is Verdict.UNKNOWN  # nothing to judge by
    got = judge(short, 80.0, BINARY)
    assert got.verdict is Verdict.LEARNED and got.steps == 7 and got.loss_start == 0.696  # window of 1 step
    assert judge(short, 52.0, BINARY).verdict is Verdict.NOT_LEARNED  # the dev rule needs no steps
    assert judge([], None, Baseline("f1")).record()["loss_start"] is None
    assert judge(FLAT[:health.MIN_LOSS_STEPS], None, BINARY).verdict is Verdict.NOT_LEARNED


def rows(labels):
    return [{"input_ids": [0] * (len(x) if isinstance(x, list) else 3), "labels": x} for x in labels]


def test_baseline_of_sentence_classification_comes_from_the_dev_labels():
    task = get_task("sst2")
    dev = rows([1, 1, 0])
    got = baseline(task, handler_for(task), [{}] * 3, dev, rows([0, 1, 1, 1]))
    assert got == Baseline("accuracy", 50.0, pytest.approx(200 / 3), pytest.approx(-(0.25 * math.log(0.25)
                                                                                     + 0.75 * math.log(0.75))), 3)
    assert got.level == pytest.approx(200 / 3)
    xnli = get_task("xnli")  # three classes; ties go to the first label
    assert baseline(xnli, handler_for(xnli), [{}] * 2, rows([2, 1]), rows([0, 1, 2])) == \
        Baseline("accuracy", pytest.approx(100 / 3), 50.0, pytest.approx(math.log(3)), 2)


def pos_dev() -> tuple:
    """UD-POS, two dev sentences (NOUN VERB / NOUN NOUN DET) as examples and encoded rows, and the three tags' ids."""
    pos = get_task("udpos")
    noun, verb, det = (pos.labels.index(t) for t in ("NOUN", "VERB", "DET"))
    examples = [{"tokens": ["a", "b"], "tags": ["NOUN", "VERB"]}, {"tokens": ["c", "d", "e"],
                                                                  "tags": ["NOUN", "NOUN", "DET"]}]
    dev = [{"input_ids": [0, 5, 6, 2], "labels": [-100, noun, verb, -100], "word_index": [-1, 0, 1, -1]},
           {"input_ids": [0, 7, 8, 9, 2], "labels": [-100, noun, noun, det, -100], "word_index": [-1, 0, 1, 2, -1]}]
    return pos, examples, dev, (noun, verb, det)


def test_baseline_of_tagging_scores_the_majority_tag_with_the_task_metric():
    pos, examples, dev, (noun, verb, det) = pos_dev()
    got = baseline(pos, handler_for(pos), examples, dev, dev)
    assert got == Baseline("accuracy", pytest.approx(100 / 17), 60.0, pytest.approx(
        -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))), 5)  # NOUN for all 5 words: 3 right
    ner = get_task("panx")
    o, per = ner.labels.index("O"), ner.labels.index("B-PER")
    examples = [{"tokens": ["x", "y", "z"], "tags": ["B-PER", "O", "O"]}]
    dev = [{"input_ids": [0, 1, 2, 3, 2], "labels": [-100, per, o, o, -100], "word_index": [-1, 0, 1, 2, -1]}]
    assert baseline(ner, handler_for(ner), examples, dev, dev) == Baseline("f1", None, 0.0, pytest.approx(
        -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))), 3)  # all 'O': no entity found, F1 0; no chance


def test_baseline_of_multiple_choice_and_qa():
    copa = get_task("copa")
    dev = [{"input_ids": [[0, 1], [0, 2]], "labels": label} for label in (1, 1, 1, 0)]
    assert baseline(copa, handler_for(copa), [{}] * 4, dev, dev) == \
        Baseline("accuracy", 50.0, 75.0, pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), 4)
    qa = get_task("tydiqa")
    features = [{"input_ids": [0, 1], "start_positions": 1, "end_positions": 1}]
    assert baseline(qa, handler_for(qa), [{}], features, features) == Baseline("f1", None, None, None)
    assert baseline(copa, handler_for(copa), [], [], dev).majority is None  # no dev data: no majority class


def test_warning_line():
    record = judge(FLAT, None, BINARY).record()
    assert health.warning("sst2-bottleneck", record) == (
        f"warning: 'sst2-bottleneck' did not learn: {record['reason']} (check train.lr; README: Did it learn?)")
    assert health.warning("x", judge(LEARNED, 85.0, BINARY).record()) is None
    fit = judge(LEARNED, 50.0, BINARY).record()  # at the baseline on dev, yet the loss fell: not the learning rate
    assert health.warning("x", fit) == (f"warning: 'x' did not learn: {fit['reason']} (check that the dev set is "
                                        "like the training data; README: Did it learn?)")
    assert health.warning("x", None) is None  # manifests written before the rule existed


def test_udpos_is_judged_by_its_accuracy_beside_the_seqeval_f1():
    """UD-POS's main metric is seqeval F1 (issue 16), but the majority tag scores ~0 F1 (a run of equal tags is
    one chunk), so the verdict holds its token accuracy against chance (100 / 17) and the majority tag."""
    from stepstone.training.loop import TaskData, TrainResult

    pos, examples, dev, (noun, verb, det) = pos_dev()
    # all NOUN: one predicted chunk per sentence, OUN(0-1) and OUN(3-5) (an "O" goes between the sentences), against
    # gold OUN(0), ERB(1), OUN(3-4), ET(5): none right, F1 0, while 3 of 5 words are right
    majority = handler_for(pos).score(examples, dev, [np.eye(17, dtype=np.float32)[[noun] * len(r["input_ids"])]
                                                      for r in dev], pos, "en")
    assert majority == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "accuracy": 60.0}
    # 40 copies: 200 dev words, margin 2 * 100 * sqrt(0.6 * 0.4 / 200) = 6.9 points above the majority tag's 60
    part = TaskData(pos, handler_for(pos), "udpos", dev * 40, examples * 40, dev * 40)
    steps = [{"kind": "step", "tasks": ["udpos"], "loss": loss} for loss in LEARNED]
    for dev_scores, verdict in (({"f1": 70.0, "precision": 70.0, "recall": 70.0, "accuracy": 61.0}, "not-learned"),
                                ({"f1": 40.0, "precision": 40.0, "recall": 40.0, "accuracy": 95.0}, "learned")):
        record = health.assess([part], TrainResult(history=[], best_epoch=1, dev_metrics=dev_scores, log=steps))
        assert (record["verdict"], record["metric"], record["dev"]) == (verdict, "accuracy", dev_scores["accuracy"])
        assert (record["chance"], record["majority"], record["margin"]) == (
            pytest.approx(100 / 17), pytest.approx(60.0), pytest.approx(2 * 100 * math.sqrt(0.24 / 200)))
