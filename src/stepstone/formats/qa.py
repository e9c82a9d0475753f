"""Extractive QA (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): start/end logits over a sliding window.

Long contexts are split into windows of `max_length` tokens overlapping by `doc_stride` (see `encode` for
what a long question does to both). Training
windows that do not contain the whole answer point at <s> (index 0). At evaluation every window
proposes its `N_BEST` starts and ends; the best-scoring valid span (inside the context, end >= start,
at most `MAX_ANSWER_TOKENS` tokens) over all windows of a question is the prediction, mapped back to
the context's characters through the tokenizer's offsets (HF's run_qa post-processing). For tasks with
unanswerable questions (SQuAD v2.0) the prediction is empty when <s> (start + end) outscores that span.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import StepstoneError
from ..tasks.base import TaskFormat, TaskSpec
from .base import Decoded, examples_in, pad_batch, register

N_BEST = 20
MAX_ANSWER_TOKENS = 30


class ExtractiveQA(Decoded):
    model_keys = ("input_ids", "attention_mask", "start_positions", "end_positions")

    def add_head(self, model: Any, name: str, task: TaskSpec) -> None:
        model.add_qa_head(name)

    def encode(self, examples, tokenizer, task, max_length, doc_stride, train):
        """Windows of every example. The tokens left for context after the question and the special tokens
        (the window) differ per question; an overlap of `doc_stride` or more would not advance, so each
        example's overlap is clipped to its window less one token. A question longer than half of what
        `max_length` leaves after the special tokens is cut to that half, so a context window always has
        room (BERT's SQuAD scripts cut questions to 64 tokens for the same reason)."""
        check_window_settings(max_length, doc_stride, "doc_stride", "max_length")
        budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)  # question + context tokens
        if budget < 2:
            raise StepstoneError(f"max_length {max_length} leaves no room for a question and its context after "
                                 f"the {max_length - budget} special tokens: use a max_length of at least "
                                 f"{max_length - budget + 2}")
        questions, lengths = _questions(examples, budget // 2, tokenizer)
        groups: dict[int, list[int]] = {}  # overlap -> the examples windowed with it, in order
        for index, length in enumerate(lengths):
            groups.setdefault(min(doc_stride, budget - length - 1), []).append(index)
        windows: list[list[dict]] = [[] for _ in examples]
        for stride, indexes in groups.items():
            enc = tokenizer([questions[i] for i in indexes], [examples[i]["context"] for i in indexes],
                            truncation="only_second", max_length=max_length, stride=stride,
                            return_overflowing_tokens=True, return_offsets_mapping=True)
            for i, offsets in enumerate(enc["offset_mapping"]):
                example_index = indexes[enc["overflow_to_sample_mapping"][i]]
                sequence_ids = enc.sequence_ids(i)
                context = [list(o) if s == 1 else None for o, s in zip(offsets, sequence_ids)]
                start, end = _answer_tokens(examples[example_index]["answers"], context)
                windows[example_index].append({
                    "input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                    "start_positions": start, "end_positions": end, "example_index": example_index,
                    "offsets": context})
        return [row for rows in windows for row in rows]

    def collate(self, rows: Sequence[dict], tokenizer: Any):
        return pad_batch(rows, self.model_keys, {"input_ids": tokenizer.pad_token_id})

    def loss_units(self, batch):
        return examples_in(batch)  # features: a long context gives several

    def gather(self, output):
        start = output.start_logits.float().cpu().numpy()
        end = output.end_logits.float().cpu().numpy()
        return [np.stack([s, e]) for s, e in zip(start, end)]

    def decode(self, examples, rows, outputs, task):
        best: dict[int, tuple[float, str]] = {}
        null: dict[int, float] = {}  # lowest <s> score over an example's windows (SQuAD v2 post-processing)
        for row, logits in zip(rows, outputs):
            index = row["example_index"]
            null[index] = min(null.get(index, np.inf), float(logits[0][0] + logits[1][0]))
            span = _best_span(logits[0], logits[1], row["offsets"], examples[index]["context"])
            if span is not None and (index not in best or span[0] > best[index][0]):
                best[index] = span
        if task.unanswerable:  # "no answer" when <s> outscores the best span
            best = {i: (s, "" if null[i] > s else text) for i, (s, text) in best.items()}
        predictions = {e["id"]: best.get(i, (0.0, ""))[1] for i, e in enumerate(examples)}
        # (metrics.compute: MLQA's "context.question" languages normalise by the context's)
        return predictions, {e["id"]: e["answers"]["text"] for e in examples}


def check_window_settings(max_length: int, doc_stride: int, stride_name: str = "train.doc_stride",
                          length_name: str = "train.max_length") -> None:
    """Refuse an overlap that cannot mean what was asked: none (an answer across a window boundary would
    be in no window) or one as long as the window itself. The names say where the values came from."""
    if doc_stride < 1:
        raise StepstoneError(f"{stride_name} must be at least 1 (got {doc_stride}): QA windows overlap by "
                             "doc_stride tokens, and without overlap an answer that crosses a window boundary "
                             "is in no window")
    if doc_stride >= max_length:
        raise StepstoneError(f"{stride_name} ({doc_stride}) must be smaller than {length_name} ({max_length}): "
                             "QA windows of max_length tokens overlap by doc_stride tokens")


def _questions(examples: list[dict], most: int, tokenizer: Any) -> tuple[list[str], list[int]]:
    """Every question, cut after its `most`-th token where longer (as text: the tokenizer pairs it with
    the context), and its length in tokens."""
    questions = [e["question"].lstrip() for e in examples]
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    lengths = [len(ids) for ids in enc["input_ids"]]
    for i, offsets in enumerate(enc["offset_mapping"]):
        keep = most
        while lengths[i] > most:  # a cut prefix may tokenise differently: cut one token more until it fits
            questions[i] = questions[i][:offsets[keep - 1][1]] if keep > 0 else ""
            offsets = tokenizer(questions[i], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            lengths[i], keep = len(offsets), keep - 1
    return questions, lengths


def _answer_tokens(answers: dict, context: list) -> tuple[int, int]:
    """Token span of the first gold answer inside this window, or (0, 0) (<s>) if it is not inside."""
    if not answers["text"]:
        return 0, 0
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    inside = [i for i, o in enumerate(context) if o is not None]
    if not inside or context[inside[0]][0] > start_char or context[inside[-1]][1] < end_char:
        return 0, 0
    start = next(i for i in inside if context[i][1] > start_char)
    end = next(i for i in reversed(inside) if context[i][0] < end_char)
    return start, end


def _best_span(start_logits, end_logits, offsets, context: str) -> tuple[float, str] | None:
    starts = np.argsort(start_logits)[::-1][:N_BEST]
    ends = np.argsort(end_logits)[::-1][:N_BEST]
    best = None
    for s in starts:
        for e in ends:
            if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                continue
            if e < s or e - s + 1 > MAX_ANSWER_TOKENS:
                continue
            value = float(start_logits[s] + end_logits[e])
            if best is None or value > best[0]:
                best = (value, context[offsets[s][0]:offsets[e][1]])
    return best


register(TaskFormat.QA, ExtractiveQA())
