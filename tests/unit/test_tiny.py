"""The tiny backbone's tokenizer: XLM-R special-token layout, no <unk> on toy data, offsets and word ids."""
from __future__ import annotations

import pytest

from stepstone import tiny, toy


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tiny_tokenizer()


def test_special_ids(tok):
    assert tok.convert_tokens_to_ids(list(tiny.SPECIAL_TOKENS)) == [0, 1, 2, 3]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert (tok.cls_token_id, tok.sep_token_id) == (0, 2)
    assert tok.mask_token_id == len(tok) - 1 == tok.vocab_size - 1
    # 4 specials + 242 toy words + 94 chars + 94 "##" chars - 4 chars that are toy words (a . ? ,) + <mask>
    assert len(tok) == 431
    assert tok.model_input_names == ["input_ids", "attention_mask"]


def test_pair_layout_is_xlmr(tok):
    enc = tok("the cat is red .", "the dog")
    ids = enc["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "the", "cat", "is", "red", ".", "</s>", "</s>", "the", "dog",
                                              "</s>"]
    assert ids[0] == 0 and ids[6:8] == [2, 2] and ids[-1] == 2
    assert "token_type_ids" not in enc
    assert tok("the cat")["input_ids"] == [0, tok.convert_tokens_to_ids("the"), tok.convert_tokens_to_ids("cat"), 2]


def test_no_unk_on_toy_data(tok):
    for task in toy.TOY_TASKS:
        for lang in toy.TOY_LANGUAGES:
            for ex in toy.generate(task, "validation", lang):
                if "tokens" in ex:
                    ids = tok(ex["tokens"], is_split_into_words=True)["input_ids"]
                    assert len(ids) == len(ex["tokens"]) + 2  # every toy word is one token
                    continue
                texts = [ex.get(k) for k in ("text", "text_pair", "context", "question")] + ex.get("choices", [])
                for text in filter(None, texts):
                    ids = tok(text)["input_ids"]
                    assert tok.unk_token_id not in ids
                    assert len(ids) == len(text.split(" ")) + 2


def test_word_ids_for_pre_split_words(tok):
    enc = tok(["alice", "visits", "new", "york", "zzq", "."], is_split_into_words=True)
    assert enc.word_ids() == [None, 0, 1, 2, 3, 4, 4, 4, 5, None]
    assert tok.convert_ids_to_tokens(enc["input_ids"])[5:8] == ["z", "##z", "##q"]


def test_offsets_map_back_for_qa_window(tok):
    ex = toy.generate("toy-qa", "validation", "xb", n=1)[0]
    context = ex["context"]
    enc = tok(ex["question"], context, truncation="only_second", max_length=16, stride=4,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    assert len(enc["input_ids"]) > 1 and set(enc["overflow_to_sample_mapping"]) == {0}
    words = set(context.split(" "))
    for i, ids in enumerate(enc["input_ids"]):
        assert len(ids) == 16 and ids[:1] == [0]
        seq = enc.sequence_ids(i)
        for j, (s, e) in enumerate(enc["offset_mapping"][i]):
            if seq[j] == 1:
                assert context[s:e] == tok.convert_ids_to_tokens(ids[j]) and context[s:e] in words
    # The answer is recoverable from token offsets in some window.
    (answer,), (start,) = ex["answers"]["text"], ex["answers"]["answer_start"]
    spans = {(s, e) for i in range(len(enc["input_ids"])) for j, (s, e) in enumerate(enc["offset_mapping"][i])
             if enc.sequence_ids(i)[j] == 1}
    assert (start, start + len(answer.split(" ")[0])) in spans


def test_offsets_survive_normalisation(tok):
    text = "The  CAT is Red ."
    enc = tok(text, return_offsets_mapping=True)
    assert [text[s:e] for s, e in enc["offset_mapping"][1:-1]] == ["The", "CAT", "is", "Red", "."]
    assert tok.convert_ids_to_tokens(enc["input_ids"])[1:-1] == ["the", "cat", "is", "red", "."]


def test_oov_ascii_splits_into_characters(tok):
    assert tok.tokenize("Quokka!") == ["q", "##u", "##o", "##k", "##k", "##a", "!"]
    assert tok.unk_token_id not in tok("Hello, World #42 {x: y}")["input_ids"]
    assert tok.tokenize("café") == ["<unk>"]  # non-ASCII word: one <unk>
    assert tok.decode(tok("Quokka cat")["input_ids"], skip_special_tokens=True) == "quokka cat"


def test_batch_padding_right(tok):
    enc = tok(["the cat", "the dog is red ."], padding=True)
    assert enc["input_ids"][0][-3:] == [1, 1, 1] and enc["attention_mask"][0] == [1, 1, 1, 1, 0, 0, 0]
    assert tok.model_max_length == 512


def test_builds_are_identical():
    a, b = tiny.build_tiny_tokenizer(), tiny.build_tiny_tokenizer()
    assert a.get_vocab() == b.get_vocab() == tiny.tiny_vocab()
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
