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
