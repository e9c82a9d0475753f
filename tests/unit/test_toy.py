"""The toy tasks: deterministic, parallel across languages, en > xa > xb lexical overlap, well-formed per format."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from stepstone import toy
from stepstone.errors import StepstoneError

TASKS = tuple(toy.TOY_TASKS)
CONTENT = {w for entries in toy.LEXICON.values() for e in entries for w in e.split(" ")}


def _tokens(example: dict) -> list[str]:
    """Every whitespace token of every text field of an example."""
    if "tokens" in example:
        return list(example["tokens"])
    texts = [example.get(k, "") for k in ("text", "text_pair", "context", "question")]
    texts += example.get("choices", []) + example.get("answers", {}).get("text", [])
    return [t for text in texts if text for t in text.split(" ")]


def test_task_table():
    assert TASKS == ("toy-sentiment", "toy-pair", "toy-tags", "toy-qa", "toy-choice")
    assert {t.format for t in toy.TOY_TASKS.values()} == {"classification", "tagging", "qa", "multiple_choice"}
    assert toy.TOY_TASKS["toy-tags"].labels == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    assert toy.TOY_LANGUAGES == ("en", "xa", "xb")


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_and_seeded(task):
    a = toy.generate(task, "train", "xa", n=50)
    assert a == toy.generate(task, "train", "xa", n=50)
    assert a != toy.generate(task, "train", "xa", n=50, seed=1)
    assert a != toy.generate(task, "validation", "xa", n=50)
    assert len(toy.generate(task, "test", "en")) == toy.TOY_SPLIT_SIZES["test"] == 100
    assert len(toy.generate(task, "train", "en")) == 400


@pytest.mark.parametrize("task", TASKS)
def test_parallel_across_languages(task):
    en, xa, xb = (toy.generate(task, "validation", lang) for lang in toy.TOY_LANGUAGES)
    for a, b, c in zip(en, xa, xb):
        for other in (b, c):
            assert set(other) == set(a)
            for key in ("label", "tags"):
                assert other.get(key) == a.get(key)
            assert len(_tokens(other)) == len(_tokens(a))
            # word-by-word translation of the en example
            assert [toy.translate(w, "xb" if other is c else "xa") for w in _tokens(a)] == _tokens(other)


def test_language_overlap_en_xa_xb():
    def content(lang):
        return {w for task in TASKS for ex in toy.generate(task, "train", lang) for w in _tokens(ex)} - set(
            toy.FUNCTION_WORDS)

    en, xa, xb = content("en"), content("xa"), content("xb")
    assert en == CONTENT  # every content word is used somewhere
    shared_xa = en & xa
    assert len(shared_xa) == len(CONTENT) // 2  # exactly the fixed half
    assert shared_xa == set(sorted(CONTENT)[0::2])
    assert not en & xb
    assert xa - en <= xb  # xa's translated words are xb's words


def test_translation_is_unique_lowercase_ascii():
    words = sorted(CONTENT)
    xb = [toy.translate(w, "xb") for w in words]
    assert len(set(xb)) == len(words)
    assert not set(xb) & (CONTENT | set(toy.FUNCTION_WORDS))
    assert all(re.fullmatch(r"[a-z]+", w) for w in xb)
    assert toy.translate("cat", "en") == "cat"
    assert toy.translate("the", "xb") == "the"
    assert toy.translate("new york", "xb") == f"{toy.translate('new', 'xb')} {toy.translate('york', 'xb')}"


@pytest.mark.parametrize("lang", toy.TOY_LANGUAGES)
def test_qa_answers_at_offsets(lang):
    examples = toy.generate("toy-qa", "train", lang)
    assert len({ex["id"] for ex in examples}) == len(examples)
    assert examples[7]["id"] == f"toy-qa-train-{lang}-7"
    for ex in examples:
        (text,), (start,) = ex["answers"]["text"], ex["answers"]["answer_start"]
        assert ex["context"][start:start + len(text)] == text
        assert 3 <= ex["context"].count(" . ") + 1 <= 6
        assert ex["question"].endswith(" ?")


@pytest.mark.parametrize("lang", toy.TOY_LANGUAGES)
def test_tags_align(lang):
    labels = set(toy.TOY_TASKS["toy-tags"].labels)
    for ex in toy.generate("toy-tags", "train", lang):
        assert len(ex["tokens"]) == len(ex["tags"]) and set(ex["tags"]) <= labels
        for prev, tag in zip(["O"] + ex["tags"], ex["tags"]):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:]  # I- only continues an entity of the same type


def test_label_counts_seed0():
    def counts(task):
        return Counter(ex["label"] for ex in toy.generate(task, "train", "en"))

    assert counts("toy-sentiment") == {"positive": 213, "negative": 187}
    assert counts("toy-pair") == {"entailment": 143, "neutral": 140, "contradiction": 117}
    assert counts("toy-choice") == {0: 105, 1: 103, 2: 95, 3: 97}
    tags = Counter(t for ex in toy.generate("toy-tags", "train", "en") for t in ex["tags"])
    assert tags == {"O": 1878, "B-PER": 528, "I-PER": 266, "B-LOC": 336, "I-LOC": 93}


def test_classification_semantics():
    polarity = {w: lab for lab in ("positive", "negative") for w in toy.LEXICON[lab]}
    for ex in toy.generate("toy-sentiment", "train", "en"):
        words = ex["text"].split(" ")
        hits = [polarity[w] for w in words if w in polarity]
        assert hits == [ex["label"]] and 8 <= len(words) <= 12
    for ex in toy.generate("toy-pair", "train", "en"):
        facts = dict(re.findall(r"the (\w+) is (\w+)", ex["text"]))
        (animal, color), = re.findall(r"the (\w+) is (\w+)", ex["text_pair"])
        expected = "neutral" if animal not in facts else "entailment" if facts[animal] == color else "contradiction"
        assert ex["label"] == expected
    for ex in toy.generate("toy-choice", "train", "en"):
        facts = dict(re.findall(r"the (\w+) is (\w+)", ex["context"]))
        matches = [i for i, c in enumerate(ex["choices"]) if c.split(" ")[-1] == facts.get(c.split(" ")[1])]
        assert len(ex["choices"]) == 4 and matches == [ex["label"]]


def test_unknown_names_list_choices():
    with pytest.raises(ValueError, match="toy-choice, toy-pair, toy-qa, toy-sentiment, toy-tags"):
        toy.generate("toy-nope", "train", "en")
    with pytest.raises(ValueError, match="en, xa, xb"):
        toy.generate("toy-qa", "train", "de")
    with pytest.raises(StepstoneError, match="test, train, validation"):
        toy.generate("toy-qa", "dev", "en")
    with pytest.raises(ValueError, match="en, xa, xb"):
        toy.translate("cat", "fr")


def test_vocabulary_covers_everything():
    vocab = toy.vocabulary()
    assert vocab == sorted(set(vocab))
    assert len(vocab) == 242
    emitted = {w for task in TASKS for lang in toy.TOY_LANGUAGES for split in toy.TOY_SPLIT_SIZES
               for ex in toy.generate(task, split, lang) for w in _tokens(ex)}
    assert emitted <= set(vocab)
    assert "" not in emitted  # single spaces only
