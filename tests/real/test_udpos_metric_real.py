"""UD-POS scored as XTREME scores it (issue 16), on multilingual-e5-small with ../shared data: a short UD-POS
adapter run evaluated on German; the score is seqeval's own F1 / precision / recall on the very predictions the
evaluation made (raw UPOS strings, seqeval's default mode), with token accuracy as the second column."""
from __future__ import annotations

import json
import warnings

import pytest
from typer.testing import CliRunner

from stepstone.formats import tagging
from stepstone.tasks.tagging import UPOS
from stepstone_cli.main import app

pytestmark = pytest.mark.real


def cli(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


def test_udpos_score_is_seqeval_f1_on_the_predictions_with_accuracy_beside_it(e5_backbone, shared_data, tmp_path,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = cli("train", "--task", "udpos", "--backbone", e5_backbone, "--data-dir", shared_data, "--zoo", "zoo",
                  "-q", "train.lr=5e-3", "train.epochs=1", "train.batch_size=16", "train.max_length=64",
                  "train.max_train_examples=96", "train.max_eval_examples=32")
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((tmp_path / "zoo" / "udpos-bottleneck" / "manifest.json").read_text())
    assert manifest["metrics"]["main"] == "f1" and set(manifest["metrics"]["dev"]) == {"f1", "precision", "recall",
                                                                                        "accuracy"}
    assert manifest["learning"]["metric"] == "accuracy"  # judged against chance and the majority tag

    scored = []  # what the evaluation scored: (predicted tags, gold tags)
    real = tagging.Tagging.decode
    monkeypatch.setattr(tagging.Tagging, "decode", lambda self, *args: scored.append(real(self, *args)) or scored[-1])
    done = cli("evaluate", "udpos-bottleneck", "--zoo", "zoo", "--langs", "de", "--max-examples", "100",
               "--data-dir", shared_data, "-q")
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "zoo" / "udpos-bottleneck" / "evaluations" / "udpos.test.json").read_text())
    (preds, refs), = scored
    assert len(refs) == len(preds) == 100 and {t for r in refs + preds for t in r} <= set(UPOS)  # raw UPOS strings

    from seqeval.metrics import f1_score, precision_score, recall_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {"f1": 100 * f1_score(refs, preds), "precision": 100 * precision_score(refs, preds),
                    "recall": 100 * recall_score(refs, preds)}
    words = sum(len(r) for r in refs)
    expected["accuracy"] = 100 * sum(a == b for p, r in zip(preds, refs) for a, b in zip(p, r)) / words
    assert report["metric"] == "f1" and report["scores"]["de"] == pytest.approx(expected, abs=1e-9)
    assert report["scores"]["de"]["f1"] != pytest.approx(report["scores"]["de"]["accuracy"])  # two measures
    header = next(line for line in done.stdout.splitlines() if "language" in line)
    assert header.split()[1::2] == ["language", "accuracy", "f1", "precision", "recall"]


def test_the_majority_tag_scores_almost_no_seqeval_f1_on_english_dev(shared_data):
    """Why Did it learn? judges UD-POS by its accuracy (stepstone.health): all NOUN is one chunk per sentence."""
    from stepstone.metrics import pos_f1
    from stepstone.tasks import Split, get_task
    from stepstone.tasks.examples import load_examples

    gold = [e["tags"] for e in load_examples(get_task("udpos"), Split.VALIDATION, "en", shared_data)]
    out = pos_f1([["NOUN"] * len(tags) for tags in gold], gold)
    assert (len(gold), sum(map(len, gold))) == (3974, 62632)
    assert out["accuracy"] == pytest.approx(100 * 11129 / 62632) and out["f1"] == pytest.approx(0.0797, abs=1e-4)
