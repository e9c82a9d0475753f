"""Perturbing a task's examples with their labels kept aligned, one function per task format (a registry:
a new format registers how its examples are perturbed).

- classification / pair / multiple choice: every text field (text, text_pair; context and each choice) is
  perturbed, the label is unchanged;
- tagging: each token is perturbed on its own; dropout removes a token together with its tag, codeswitch
  replaces one token by its translation (one token, one tag);
- QA: the question and the context are perturbed except the gold answers (and any word an answer is part
  of), which stay verbatim; every `answer_start` is recomputed to where its answer is in the new context.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Mapping

from ..registry import Registry
from ..tasks.base import TaskFormat
from .noise import character_pool, join_words, split_words
from .spec import Perturbation


@dataclass(frozen=True)
class Noisy:
    """One example's perturbation: the spec, the example's generator and its own characters by script."""

    perturbation: Perturbation
    rng: random.Random
    pool: Mapping[str, list[str]]

    def words(self, words: list[str], others_kept: bool = False) -> list[str | None]:
        return self.perturbation.noise(self.perturbation, words, self.rng, self.pool, others_kept)

    def text(self, text: str | None) -> str | None:
        if text is None:
            return None
        parts = split_words(text)
        return join_words(parts, self.words([w for w in parts[0::2] if w]))


Aligner = Callable[[dict, Perturbation, random.Random], dict]
ALIGNERS: Registry[Aligner] = Registry("task format with perturbations")


def aligner(fmt: TaskFormat) -> Callable[[Aligner], Aligner]:
    def register(function: Aligner) -> Aligner:
        return ALIGNERS.register(fmt.value, function)
    return register


@aligner(TaskFormat.CLASSIFICATION)
def _classification(example: dict, perturbation: Perturbation, rng: random.Random) -> dict:
    noisy = Noisy(perturbation, rng, character_pool([example["text"], example.get("text_pair") or ""]))
    out = {**example, "text": noisy.text(example["text"])}
    if "text_pair" in example:
        out["text_pair"] = noisy.text(example["text_pair"])
    return out


@aligner(TaskFormat.MULTIPLE_CHOICE)
def _multiple_choice(example: dict, perturbation: Perturbation, rng: random.Random) -> dict:
    noisy = Noisy(perturbation, rng, character_pool([example["context"], *example["choices"]]))
    return {**example, "context": noisy.text(example["context"]),
            "choices": [noisy.text(choice) for choice in example["choices"]]}


@aligner(TaskFormat.TAGGING)
def _tagging(example: dict, perturbation: Perturbation, rng: random.Random) -> dict:
    noisy = Noisy(perturbation, rng, character_pool(example["tokens"]))
    kept = [(token, tag) for token, tag in zip(noisy.words(list(example["tokens"])), example["tags"])
            if token is not None]
    return {**example, "tokens": [token for token, _ in kept], "tags": [tag for _, tag in kept]}


@aligner(TaskFormat.QA)
def _qa(example: dict, perturbation: Perturbation, rng: random.Random) -> dict:
    context, answers = example["context"], example["answers"]
    noisy = Noisy(perturbation, rng, character_pool([example["question"], context]))
    question = noisy.text(example["question"])
    kept = _kept_regions(context, [(s, s + len(t)) for t, s in zip(answers["text"], answers["answer_start"]) if t])
    free = [context[a:b] for a, b in zip([0] + [end for _, end in kept], [start for start, _ in kept] + [len(context)])]
    parts = [split_words(segment) for segment in free]
    words = [w for segment in parts for w in segment[0::2] if w]
    new = iter(noisy.words(words, others_kept=bool(kept)))
    out, moved = [], {}  # moved: a kept region's old start -> its new start
    for i, segment in enumerate(parts):
        out.append(join_words(segment, [next(new) for w in segment[0::2] if w]))
        if i < len(kept):
            moved[kept[i][0]] = sum(map(len, out))
            out.append(context[kept[i][0]:kept[i][1]])
    starts = []
    for text, start in zip(answers["text"], answers["answer_start"]):
        region = max((a for a, b in kept if a <= start < b), default=None) if text else None
        starts.append(moved[region] + start - region if region is not None else start)
    return {**example, "question": question, "context": "".join(out),
            "answers": {"text": list(answers["text"]), "answer_start": starts}}


def _kept_regions(context: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The answers' spans widened to the whole words they are part of and merged where they overlap or touch,
    in order: what stays verbatim."""
    widened = []
    for start, end in spans:
        while start > 0 and not context[start - 1].isspace():
            start -= 1
        while end < len(context) and not context[end].isspace():
            end += 1
        widened.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(widened):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
