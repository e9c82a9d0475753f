"""Extractive QA over long contexts: sliding windows, answer positions per window, span post-processing."""
from __future__ import annotations

import numpy as np

from stepstone.formats.qa import ExtractiveQA
from stepstone.tasks import get_task
from stepstone.tiny import build_tiny_tokenizer

FILLER = " ".join(["the cat is red ."] * 12)  # 60 words
CONTEXT = f"{FILLER} the dog is blue ."
ANSWER_START = CONTEXT.index("blue")
EXAMPLE = {"id": "q1", "question": "what color is the dog ?", "context": CONTEXT,
           "answers": {"text": ["blue"], "answer_start": [ANSWER_START]}}


def encode(train: bool):
    return ExtractiveQA().encode([EXAMPLE], build_tiny_tokenizer(), get_task("toy-qa"), max_length=32,
                                 doc_stride=8, train=train)


def test_long_context_is_split_into_overlapping_windows():
    rows = encode(train=True)
    tokenizer = build_tiny_tokenizer()
    assert len(rows) > 3 and {r["example_index"] for r in rows} == {0}
    assert all(len(r["input_ids"]) <= 32 for r in rows)
    inside = [r for r in rows if r["start_positions"] != 0]
    # the answer is only in the last window(s); everywhere else the target is <s> (index 0)
    assert inside and rows[-1] in inside and rows[0]["start_positions"] == rows[0]["end_positions"] == 0
    for row in inside:
        assert tokenizer.convert_ids_to_tokens(row["input_ids"][row["start_positions"]]) == "blue"
        assert row["end_positions"] == row["start_positions"]


def test_best_span_over_windows_maps_back_to_context_characters():
    rows = encode(train=False)
    task = get_task("toy-qa")
    outputs = []
    for row in rows:
        start, end = np.full(len(row["input_ids"]), -5.0), np.full(len(row["input_ids"]), -5.0)
        offsets = row["offsets"]
        target = next((i for i, o in enumerate(offsets) if o is not None and CONTEXT[o[0]:o[1]] == "blue"), None)
        if target is not None:
            start[target], end[target] = 4.0, 4.0
        start[0] = end[0] = 9.0  # <s> scores highest but is not a context token: never an answer
        outputs.append(np.stack([start, end]))
    assert ExtractiveQA().score([EXAMPLE], rows, outputs, task, "en") == {"exact_match": 100.0, "f1": 100.0}


def test_unanswerable_questions_predict_no_answer_when_s_wins():
    from dataclasses import replace

    rows = encode(train=False)
    outputs = []
    for row in rows:
        logits = np.full((2, len(row["input_ids"])), -5.0)
        logits[:, 0] = 3.0  # <s>: "no answer" scores 6 in every window
        target = next((i for i, o in enumerate(row["offsets"]) if o is not None and CONTEXT[o[0]:o[1]] == "blue"), None)
        if target is not None:
            logits[:, target] = 2.0  # best span scores 4 < 6
        outputs.append(logits)
    v1, v2 = get_task("toy-qa"), replace(get_task("toy-qa"), unanswerable=True)
    no_answer = {**EXAMPLE, "answers": {"text": [], "answer_start": []}}
    assert ExtractiveQA().score([EXAMPLE], rows, outputs, v1, "en")["f1"] == 100.0  # v1.1: always a span
    assert ExtractiveQA().score([EXAMPLE], rows, outputs, v2, "en")["f1"] == 0.0
    assert ExtractiveQA().score([no_answer], rows, outputs, v2, "en") == {"exact_match": 100.0, "f1": 100.0}


# ---- windows after a long question (issue 13)
def context_tokens(tokenizer, context: str) -> list[tuple[int, int]]:
    return [tuple(o) for o in tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]


def windows(rows, index: int) -> list[list[tuple[int, int]]]:
    return [[tuple(o) for o in r["offsets"] if o is not None] for r in rows if r["example_index"] == index]


def test_each_example_overlaps_by_what_its_window_allows():
    """max_length 20 leaves 16 tokens after <s> q </s></s> ... </s>: a 6-token question leaves a window of 10,
    so a stride of 12 (the tokenizer would panic) is clipped to 9; a 1-token question keeps 12."""
    tokenizer = build_tiny_tokenizer()
    short = {**EXAMPLE, "id": "q2", "question": "color ?"}
    assert [len(tokenizer(e["question"], add_special_tokens=False)["input_ids"]) for e in (EXAMPLE, short)] == [6, 2]
    rows = ExtractiveQA().encode([EXAMPLE, short], tokenizer, get_task("toy-qa"), max_length=20, doc_stride=12,
                                 train=True)
    assert [r["example_index"] for r in rows] == sorted(r["example_index"] for r in rows)  # examples in order
    assert all(len(r["input_ids"]) <= 20 for r in rows)
    full = context_tokens(tokenizer, CONTEXT)
    for index, (window, overlap) in enumerate([(10, 9), (14, 12)]):
        spans = windows(rows, index)
        assert all(len(s) == window for s in spans[:-1])
        assert all(a[-overlap:] == b[:overlap] for a, b in zip(spans, spans[1:]))  # consecutive windows overlap
        assert sorted({o for s in spans for o in s}) == full  # together they cover the whole context
    assert {r["start_positions"] > 0 for r in rows} == {True, False}  # the answer is in some windows


def test_a_question_longer_than_the_window_is_cut_to_half_of_it():
    tokenizer = build_tiny_tokenizer()
    question = " ".join(["what color is the dog ?"] * 8)  # 48 tokens, more than max_length
    rows = ExtractiveQA().encode([{**EXAMPLE, "question": question}], tokenizer, get_task("toy-qa"), max_length=20,
                                 doc_stride=12, train=False)
    kept = tokenizer("what color is the dog ? what color", add_special_tokens=False)["input_ids"]
    assert all(r["input_ids"][1:9] == kept and len(r["input_ids"]) <= 20 for r in rows)  # 8 = 16 // 2 tokens
    spans = windows(rows, 0)
    assert all(len(s) == 8 for s in spans[:-1]) and all(a[-7:] == b[:7] for a, b in zip(spans, spans[1:]))
    assert sorted({o for s in spans for o in s}) == context_tokens(tokenizer, CONTEXT)


def test_windows_that_fit_are_the_tokenizers_own():
    """Where nothing needs clipping the rows are exactly what one tokenizer call gives."""
    tokenizer = build_tiny_tokenizer()
    enc = tokenizer([EXAMPLE["question"]], [CONTEXT], truncation="only_second", max_length=32, stride=8,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    assert [r["input_ids"] for r in encode(train=True)] == enc["input_ids"]


def test_settings_that_leave_no_window_are_refused():
    import pytest

    from stepstone.errors import StepstoneError
    from stepstone.formats.qa import check_window_settings

    with pytest.raises(StepstoneError, match=r"^max_length 5 leaves no room for a question and its context after "
                                             r"the 4 special tokens: use a max_length of at least 6$"):
        ExtractiveQA().encode([EXAMPLE], build_tiny_tokenizer(), get_task("toy-qa"), max_length=5, doc_stride=1,
                              train=True)
    with pytest.raises(StepstoneError, match=r"^train.doc_stride must be at least 1 \(got 0\): QA windows overlap"):
        check_window_settings(32, 0)
    with pytest.raises(StepstoneError, match=r"^--doc-stride \(32\) must be smaller than the run's "
                                             r"train.max_length \(32\): "):
        check_window_settings(32, 32, "--doc-stride", "the run's train.max_length")
    check_window_settings(32, 31)
