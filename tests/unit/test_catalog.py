"""The task catalog: every task is registered once with a consistent spec, and hub rows convert exactly
(datasets.load_dataset is replaced by an in-memory dataset: no network)."""
from __future__ import annotations

import datasets
import pytest

from stepstone.errors import StepstoneError
from stepstone.tasks import TASKS, Split, TaskFormat, get_task
from stepstone.tasks.examples import load_examples

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


# The benchmark's official lists: google-research/xtreme evaluate.py TASK2LANGS (Hu et al. 2020); XCOPA from
# XTREME-R's scripts/download_data.sh (download_xcopa).
OFFICIAL = {
    "xnli": "ar bg de el en es fr hi ru sw th tr ur vi zh",
    "pawsx": "de en es fr ja ko zh",
    "udpos": "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh",
    "panx": "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw yo my zh "
            "kk tr et fi hu",
    "xquad": "en es de el ru tr ar vi th zh hi",
    "mlqa": "en es de ar hi vi zh",
    "tydiqa": "en ar bn fi id ko ru sw te",
    "bucc": "de fr ru zh",
    "tatoeba": "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw zh kk tr et fi "
               "hu",
    "xcopa": "et ht id it qu sw ta th tr vi zh",
}


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_language_lists(name):
    task = get_task(name)
    assert sorted(task.official_languages) == sorted(OFFICIAL[name].split())
    assert len(task.official_languages) == len(set(task.official_languages))


def test_languages_beyond_the_benchmark_are_the_sources_extras():
    extra = {name: sorted(set(get_task(name).languages) - set(get_task(name).official_languages)) for name in OFFICIAL}
    assert extra == {**{name: [] for name in OFFICIAL}, "xquad": ["ro"],
                     "mlqa": sorted(f"{c}.{q}" for c in OFFICIAL["mlqa"].split() for q in OFFICIAL["mlqa"].split()
                                    if c != q)}


def test_tatoeba_three_letter_codes_are_xtremes():
    from stepstone.tasks.sources import ISO3

    # google-research/xtreme utils_preprocess.py, tatoeba_preprocess: lang3_dict
    xtreme = {"af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
              "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
              "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
              "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
              "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn", "az": "aze", "lt": "lit", "pl": "pol", "uk": "ukr",
              "ro": "ron"}
    assert {lang: ISO3[lang] for lang in xtreme} == xtreme


def test_english_splits_are_borrowed_only_where_the_task_has_none():
    """train_from / dev_from never shadow a split the task has in English itself (MLQA's and TyDiQA's dev)."""
    for name, task in TASKS.items():
        for split, other in ((Split.TRAIN, task.train_from), (Split.VALIDATION, task.dev_from)):
            if other is None:
                continue
            local, hub = getattr(task.source, "local", None), getattr(task.source, "hub", None)
            own = task.train_language in task.languages and (
                (local is not None and split in local.files) or (hub is not None and split in hub.splits))
            assert not own, (name, split)
    assert get_task("mlqa").dev_from is None and get_task("tydiqa").dev_from is None
