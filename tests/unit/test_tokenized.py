"""The tokenised-rows cache: a hit gives exactly the rows a fresh encoding gives, for every format, and
anything the rows depend on changes the key."""
from __future__ import annotations

import pytest

from stepstone import tokenized
from stepstone.backbone import load_backbone
from stepstone.formats import handler_for
from stepstone.specs import BackboneSpec
from stepstone.tasks import get_task
from stepstone.toy import generate


@pytest.fixture(scope="module")
def tokenizer():
    return load_backbone(BackboneSpec("tiny")).tokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPSTONE_CACHE", str(tmp_path))
    return tmp_path / "tokenized"


@pytest.mark.parametrize("name", ["toy-sentiment", "toy-pair", "toy-tags", "toy-qa", "toy-choice"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_a_cache_hit_equals_a_fresh_encoding(cache, tokenizer, monkeypatch, name, train):
    task, examples = get_task(name), generate(name, "train", "en")
    handler = handler_for(task)
    fresh = handler.encode(examples, tokenizer, task, 64, 16, train)
    assert tokenized.encode(handler, examples, tokenizer, task, 64, 16, train) == fresh  # miss: encodes, stores
    assert len(list(cache.iterdir())) == 1
    monkeypatch.setattr(type(handler), "encode", lambda *a, **k: pytest.fail("encoded again on a cache hit"))
    assert tokenized.encode(handler, examples, tokenizer, task, 64, 16, train) == fresh


def test_everything_the_rows_depend_on_is_in_the_key(cache, tokenizer):
    task, examples = get_task("toy-tags"), generate("toy-tags", "train", "en")
    handler = handler_for(task)
    tokenized.encode(handler, examples, tokenizer, task, 64, 16, True)
    changed = [{**examples[0], "tags": ["O"] * len(examples[0]["tags"])}, *examples[1:]]
    other_language = generate("toy-tags", "train", "xa")
    for args in [(examples, tokenizer, task, 32, 16, True), (examples, tokenizer, task, 64, 16, False),
                 (changed, tokenizer, task, 64, 16, True), (other_language, tokenizer, task, 64, 16, True)]:
        tokenized.encode(handler, *args)
    assert len(list(cache.iterdir())) == 5  # one entry per distinct encoding
    tokenizer.add_tokens(["zzzword"])  # another tokenizer definition: another key
    tokenizer._stepstone_fingerprint = None
    try:
        tokenized.encode(handler, examples, tokenizer, task, 64, 16, True)
    finally:
        tokenizer._stepstone_fingerprint = None
    assert len(list(cache.iterdir())) == 6


def test_small_sets_and_off_are_not_cached(cache, tokenizer, monkeypatch):
    task = get_task("toy-tags")
    handler = handler_for(task)
    few = generate("toy-tags", "train", "en", n=tokenized.MIN_EXAMPLES - 1)
    tokenized.encode(handler, few, tokenizer, task, 64, 16, True)
    assert not cache.exists()
    monkeypatch.setenv("STEPSTONE_CACHE", "off")
    tokenized.encode(handler, generate("toy-tags", "train", "en"), tokenizer, task, 64, 16, True)
    assert not cache.exists()


@pytest.mark.parametrize("name", ["toy-sentiment", "toy-pair", "toy-tags", "toy-qa", "toy-choice"])
def test_encoding_in_chunks_equals_one_call_with_progress_per_chunk(tokenizer, monkeypatch, name):
    from contextlib import contextmanager

    monkeypatch.setenv("STEPSTONE_CACHE", "off")
    monkeypatch.setattr(tokenized, "CHUNK", 7)
    task, examples = get_task(name), generate(name, "train", "en", n=20)
    handler = handler_for(task)
    calls = []

    @contextmanager
    def progress(description, total):
        calls.append((description, total))

        class Bar:
            def advance(self, steps=1, status=""):
                calls.append(steps)

        yield Bar()

    # 24 tokens, stride 8: a QA example overflows into several rows (48 rows of 20 examples)
    rows = tokenized.encode(handler, examples, tokenizer, task, 24, 8, False, progress, f"tokenize {name} [en]")
    assert rows == handler.encode(examples, tokenizer, task, 24, 8, False)  # QA's example_index shifted back
    assert len(rows) == (48 if name == "toy-qa" else 20)
    assert calls == [(f"tokenize {name} [en]", 20), 7, 7, 6]
