"""The task catalog: every task is registered once with a consistent spec, and hub rows convert exactly
(datasets.load_dataset is replaced by an in-memory dataset: no network)."""
from __future__ import annotations

import datasets
import pytest

from stepstone.data import load_examples
from stepstone.errors import StepstoneError
from stepstone.tasks import TASKS, Split, TaskFormat, get_task

PAPER_INTERMEDIATE = {"anli", "anli-plus", "ccg", "mnli", "qqp", "squad", "squad-v2", "hellaswag", "cosmosqa", "commonsenseqa", "sst2",
                      "siqa", "copa"}
XTREME = {"xnli": 15, "pawsx": 7, "udpos": 33, "panx": 40, "xquad": 12, "mlqa": 49, "tydiqa": 9, "bucc": 4,
          "tatoeba": 36, "xcopa": 11}


def test_catalog_has_the_papers_tasks_with_their_languages():
    assert PAPER_INTERMEDIATE <= set(TASKS)
    assert {name: len(get_task(name).languages) for name in XTREME} == XTREME
    assert get_task("xnli").train_from == "mnli" and get_task("xquad").train_from == "squad"
    assert get_task("mlqa").train_from == "squad" and get_task("xcopa").train_from == "copa"
    assert {get_task(n).format for n in ("bucc", "tatoeba")} == {TaskFormat.RETRIEVAL}


def test_every_borrowed_source_exists_with_the_same_labels():
    for name, task in TASKS.items():
        for other in filter(None, (task.train_from, task.dev_from)):
            assert get_task(other).labels == task.labels and get_task(other).format is task.format, name


@pytest.fixture
def hub(monkeypatch):
    calls = []

    def fake(path, config=None, split=None):
        calls.append((path, config, split))
        return fake.rows

    monkeypatch.setattr(datasets, "load_dataset", fake)
    fake.calls = calls
    return fake


def test_hub_pairs_map_integer_labels(hub):
    hub.rows = datasets.Dataset.from_list([
        {"premise": "p1", "hypothesis": "h1", "label": 0}, {"premise": "p2", "hypothesis": "h2", "label": 2},
        {"premise": "p3", "hypothesis": "h3", "label": -1}])  # -1: unlabelled rows are dropped
    examples = load_examples(get_task("xnli"), Split.TEST, "de")
    assert hub.calls == [("facebook/xnli", "de", "test")]
    assert examples == [{"text": "p1", "text_pair": "h1", "label": "entailment"},
                        {"text": "p2", "text_pair": "h2", "label": "contradiction"}]
    load_examples(get_task("xnli"), Split.TRAIN, "en")  # XNLI's English training data is MNLI
    assert hub.calls[-1] == ("nyu-mll/glue", "mnli", "train")


def test_hub_tagging_maps_class_label_names(hub):
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))})
    hub.rows = datasets.Dataset.from_list([{"tokens": ["Ada", "Lovelace", "wrote"], "ner_tags": [1, 2, 0]}],
                                          features=features)
    assert load_examples(get_task("panx"), Split.TEST, "de") == [
        {"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"]}]
    assert hub.calls == [("google/xtreme", "PAN-X.de", "test")]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER", "B-XX"]))})
    hub.rows = datasets.Dataset.from_list([{"tokens": ["Ada", "x"], "ner_tags": [1, 3]}], features=features)
    with pytest.raises(StepstoneError, match="label 'B-XX' is not a label of the task"):
        load_examples(get_task("panx"), Split.TEST, "de")


def test_hub_squad_and_tydiqa_language_filter(hub):
    row = {"context": "Paris is big.", "question": "What is big?", "answers": {"text": ["Paris"], "answer_start": [0]}}
    hub.rows = datasets.Dataset.from_list([{**row, "id": "finnish-1"}, {**row, "id": "english-2"}])
    examples = load_examples(get_task("tydiqa"), Split.TEST, "en")
    assert hub.calls[-1] == ("google-research-datasets/tydiqa", "secondary_task", "validation")
    assert [e["id"] for e in examples] == ["english-2"] and examples[0]["answers"]["text"] == ["Paris"]


def test_hub_failure_is_one_line(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("offline\nmore lines")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(StepstoneError, match=r"cannot load rajpurkar/squad \(default, train\) from the hub: offline; use --data-dir"):
        load_examples(get_task("squad"), Split.TRAIN, "en")


def test_retrieval_tasks_have_no_train_split():
    with pytest.raises(StepstoneError, match="evaluation-only"):
        load_examples(get_task("tatoeba"), Split.TRAIN, "de")


def test_local_only_task_without_data_dir():
    with pytest.raises(StepstoneError, match="no hub source: pass --data-dir"):
        load_examples(get_task("bucc"), Split.VALIDATION, "zh")


def test_anli_plus_concatenates_anli_mnli_snli_for_training(hub):
    hub.rows = datasets.Dataset.from_list([{"premise": "p", "hypothesis": "h", "label": 1}])
    examples = load_examples(get_task("anli-plus"), Split.TRAIN, "en")
    assert [c[0] for c in hub.calls] == ["facebook/anli", "nyu-mll/glue", "stanfordnlp/snli"]
    assert hub.calls[0][2] == "train_r1+train_r2+train_r3" and len(examples) == 3
    load_examples(get_task("anli-plus"), Split.VALIDATION, "en")
    assert hub.calls[-1] == ("facebook/anli", None, "dev_r1+dev_r2+dev_r3")


def test_only_squad_v2_has_unanswerable_questions():
    assert [name for name, task in TASKS.items() if task.unanswerable] == ["squad-v2"]
