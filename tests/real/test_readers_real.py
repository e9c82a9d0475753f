"""Every reader on the real files in ../shared/data: exact counts and label sets (skipped when absent)."""
from __future__ import annotations

from collections import Counter

import pytest

from stepstone.data.readers import (
    read_bucc, read_conllu, read_pairs_tsv, read_single_tsv, read_squad_json, read_tagging_tsv, read_tatoeba,
)
from stepstone.errors import StepstoneError
from stepstone.tasks.multiple_choice import read_cosmosqa_csv
from stepstone.tasks.rows import JsonlShape, read_task_jsonl

pytestmark = pytest.mark.real

UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
        "SYM", "VERB", "X"}
NER = {"O"} | {f"{p}-{t}" for p in "BI" for t in ("PER", "ORG", "LOC")}
NLI = {"entailment", "neutral", "contradiction"}


def tags(examples: list[dict]) -> set[str]:
    return {t for e in examples for t in e["tags"]}


@pytest.mark.parametrize("lang", ["en", "de", "es", "zh", "ar", "hi", "ru"])
def test_xquad(shared_data, lang):
    examples = read_squad_json(shared_data / "target" / "xquad" / f"xquad.{lang}.json")
    assert len(examples) == 1190
    assert len({e["id"] for e in examples}) == 1190
    assert all(len(e["answers"]["text"]) == 1 for e in examples)


def test_tydiqa_train(shared_data):
    folder = shared_data / "target" / "tydiqa" / "tydiqa-goldp-v1.1-train"
    counts = {lang: read_squad_json(folder / f"tydiqa.goldp.{lang}.train.json") for lang in ("en", "ko", "sw")}
    assert {lang: len(e) for lang, e in counts.items()} == {"en": 3696, "ko": 1625, "sw": 2755}
    # the ids in these files are per-paragraph counters ("0", "1", ...): the reader makes them unique
    assert len({e["id"] for e in counts["en"]}) == 3696
    assert all(len(e["answers"]["text"]) == 1 for e in counts["en"])


DEV_SIZES = {"ar": 921, "bn": 113, "en": 440, "fi": 782, "id": 565, "ko": 276, "ru": 812, "sw": 499, "te": 669}


@pytest.mark.parametrize("lang", DEV_SIZES)
def test_tydiqa_dev_files_carry_no_gold_answers(shared_data, lang):
    path = shared_data / "target" / "tydiqa" / "tydiqa-goldp-v1.1-dev" / f"tydiqa.goldp.{lang}.dev.json"
    with pytest.raises(StepstoneError, match="answer with empty text"):
        read_squad_json(path)
    examples = read_squad_json(path, allow_blank_answers=True)
    assert len(examples) == DEV_SIZES[lang]
    assert all(e["answers"] == {"text": [], "answer_start": []} for e in examples)


@pytest.mark.parametrize("lang", ["ara", "cmn", "deu", "fra", "hin", "rus", "spa"])
def test_tatoeba(shared_data, lang):
    folder = shared_data / "target" / "tatoeba"
    pairs = read_tatoeba(folder / f"tatoeba.{lang}-eng.{lang}", folder / f"tatoeba.{lang}-eng.eng")
    assert len(pairs) == 1000
    assert all(src and eng for src, eng in pairs)


def test_tatoeba_first_pair(shared_data):
    folder = shared_data / "target" / "tatoeba"
    pairs = read_tatoeba(folder / "tatoeba.deu-eng.deu", folder / "tatoeba.deu-eng.eng")
    assert pairs[0] == ("Maria sagte, sie wisse nicht, wo Tom sei.", "Mary said she didn't know where Tom was.")


def test_bucc_zh_en(shared_data):
    folder = shared_data / "target" / "bucc2018"
    data = read_bucc(folder / "zh-en.dev.zh", folder / "zh-en.dev.en", folder / "zh-en.dev.gold")
    assert (len(data.source), len(data.target), len(data.gold)) == (8624, 13589, 257)
    assert data.gold[0] == ("zh-000000057", "en-000008530")
    assert len({s for s, _ in data.gold}) == len({t for _, t in data.gold}) == 257


UDPOS_SIZES = {"train-en": 21253, "dev-en": 3974, "test-en": 5440, "test-es": 3147, "test-fr": 5009,
               "test-ru": 8976, "test-zh": 3455, "test-ar": 1680, "test-hi": 2684}


@pytest.mark.parametrize("name", UDPOS_SIZES)
def test_udpos(shared_data, name):
    examples = read_tagging_tsv(shared_data / "target" / "udpos" / f"{name}.tsv")
    assert len(examples) == UDPOS_SIZES[name]
    found = tags(examples)
    # ar and hi test sets have no INTJ
    assert found == (UPOS - {"INTJ"} if name in ("test-ar", "test-hi") else UPOS)


def test_udpos_train_tokens(shared_data):
    examples = read_tagging_tsv(shared_data / "target" / "udpos" / "train-en.tsv")
    assert sum(len(e["tokens"]) for e in examples) == 375194
    assert examples[0]["tokens"][:3] == ["Al", "-", "Zaman"]


@pytest.mark.parametrize("split, sentences, words", [("dev", 799, 12480), ("test", 977, 16499)])
def test_german_gsd_conllu(shared_data, split, sentences, words):
    examples = read_conllu(shared_data / "target" / "udpos_conllu" / "de_gsd" / f"de_gsd-ud-{split}.conllu")
    assert len(examples) == sentences
    assert sum(len(e["tokens"]) for e in examples) == words  # syntactic words: "im" -> "in", "dem"
    assert tags(examples) == UPOS


def test_german_gsd_conllu_first_sentence(shared_data):
    examples = read_conllu(shared_data / "target" / "udpos_conllu" / "de_gsd" / "de_gsd-ud-dev.conllu")
    assert examples[0] == {"tokens": ["Manasse", "ist", "ein", "einzigartiger", "Parfümeur", "."],
                           "tags": ["PROPN", "AUX", "DET", "ADJ", "NOUN", "PUNCT"]}


PANX_SIZES = {"train-en": 20000, "dev-en": 10000, "dev-de": 10000, "dev-es": 10000, "dev-fr": 10000,
              "dev-ru": 10000, "dev-zh": 10000, "dev-ar": 10000, "dev-hi": 1000}


@pytest.mark.parametrize("name", PANX_SIZES)
def test_panx(shared_data, name):
    examples = read_tagging_tsv(shared_data / "target" / "panx" / f"{name}.tsv")
    assert len(examples) == PANX_SIZES[name]
    assert tags(examples) == NER


def test_panx_tokens_have_no_language_prefix(shared_data):
    examples = read_tagging_tsv(shared_data / "target" / "panx" / "train-en.tsv")
    assert examples[0]["tokens"][:2] == ["R.H.", "Saunders"]
    assert sum(t == "bar:7" for e in examples for t in e["tokens"]) == 1  # a real token, not a prefix


@pytest.mark.parametrize("lang", ["en", "de", "es", "fr", "ru", "zh", "ar", "hi"])
def test_xnli(shared_data, lang):
    examples = read_pairs_tsv(shared_data / "target" / "xnli" / f"dev-{lang}.tsv", header=False)
    assert len(examples) == 2490
    assert Counter(e["label"] for e in examples) == {label: 830 for label in NLI}
    assert not any(e["label"].endswith("\r") or e["text_pair"].endswith("\r") for e in examples)


@pytest.mark.parametrize("lang", ["en", "de", "es", "fr", "zh"])
def test_pawsx(shared_data, lang):
    examples = read_pairs_tsv(shared_data / "target" / "pawsx" / f"dev-{lang}.tsv", header=False)
    assert len(examples) == 2000
    assert {e["label"] for e in examples} == {"0", "1"}


@pytest.mark.parametrize("split, size, positive", [("train", 60614, 33828), ("dev", 6735, 3741), ("test", 872, 444)])
def test_sst2(shared_data, split, size, positive):
    examples = read_single_tsv(shared_data / "intermediate" / "sst2" / f"{split}.tsv")
    assert len(examples) == size
    assert Counter(e["label"] for e in examples) == {"1": positive, "0": size - positive}


@pytest.mark.parametrize("name, size", [("R1/dev", 1000), ("R1/test", 1000), ("R2/dev", 1000), ("R2/test", 1000),
                                        ("R3/dev", 1200), ("R3/test", 1200)])
def test_anli(shared_data, name, size):
    examples = read_task_jsonl(shared_data / "intermediate" / "anli" / f"{name}.jsonl", JsonlShape.ANLI)
    assert len(examples) == size
    assert {e["label"] for e in examples} == NLI
    assert all(set(e) == {"text", "text_pair", "label"} for e in examples)


def test_hellaswag(shared_data):
    examples = read_task_jsonl(shared_data / "intermediate" / "hellaswag" / "val.jsonl", JsonlShape.HELLASWAG)
    assert len(examples) == 10042
    assert {len(e["choices"]) for e in examples} == {4}
    assert Counter(e["label"] for e in examples) == {0: 2515, 1: 2485, 2: 2584, 3: 2458}


def test_cosmosqa(shared_data):
    examples = read_cosmosqa_csv(shared_data / "intermediate" / "cosmosqa" / "valid.csv")
    assert len(examples) == 2985
    assert {len(e["choices"]) for e in examples} == {4}
    assert Counter(e["label"] for e in examples) == {0: 744, 1: 729, 2: 761, 3: 751}
    assert examples[0]["context"].endswith("Is there any complication ? Why is this person asking about divorce ?")


def test_commonsenseqa(shared_data):
    examples = read_task_jsonl(shared_data / "intermediate" / "commonsenseqa" / "dev.jsonl", JsonlShape.COMMONSENSEQA)
    assert len(examples) == 1221
    assert {len(e["choices"]) for e in examples} == {5}
    assert Counter(e["label"] for e in examples) == {0: 239, 1: 255, 2: 241, 3: 251, 4: 235}


@pytest.mark.parametrize("name, size", [("dev", 1954), ("tst", 2224)])
def test_siqa(shared_data, name, size):
    examples = read_task_jsonl(shared_data / "intermediate" / "siqa" / f"socialIQa_v1.4_{name}.jsonl", JsonlShape.SIQA)
    assert len(examples) == size
    assert {len(e["choices"]) for e in examples} == {3}
    assert {e["label"] for e in examples} == {0, 1, 2}


@pytest.mark.parametrize("split, size", [("train", 400), ("val", 100), ("test", 500)])
def test_copa(shared_data, split, size):
    examples = read_task_jsonl(shared_data / "intermediate" / "copa_en" / f"{split}-en.jsonl", JsonlShape.COPA)
    assert len(examples) == size
    assert all(e["context"].endswith(("What was the cause?", "What was the effect?")) for e in examples)
    # the test split's labels are hidden: every one is 0
    assert {e["label"] for e in examples} == ({0} if split == "test" else {0, 1})
