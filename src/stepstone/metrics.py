"""Evaluation metrics, as the XTREME / MLQA / XQuAD papers report them.

Every metric returns a plain dict of floats in percent (0-100), unrounded. `Metric.main` names the
headline key of that dict. Empty inputs and inputs of different lengths raise `ValueError`.
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from enum import Enum
from typing import Callable, Mapping, Sequence

from seqeval.metrics import f1_score, precision_score, recall_score


class Metric(str, Enum):
    ACCURACY = "accuracy"  # sequence classification, multiple choice
    SEQEVAL_F1 = "seqeval_f1"  # entity-level F1 for BIO-tagged NER (seqeval default mode, as XTREME)
    TOKEN_ACCURACY = "token_accuracy"  # POS tagging: accuracy over all tokens
    SQUAD = "squad"  # extractive QA: exact match + token F1, max over gold answers
    RETRIEVAL_ACCURACY = "retrieval_accuracy"  # Tatoeba: top-1 xx -> en (stepstone.retrieval)
    BUCC_F1 = "bucc_f1"  # BUCC: mining F1 at the best margin threshold (stepstone.retrieval)

    @property
    def main(self) -> str:
        """Key of the headline number in this metric's result dict."""
        return _MAIN[self]


_MAIN = {Metric.ACCURACY: "accuracy", Metric.SEQEVAL_F1: "f1", Metric.TOKEN_ACCURACY: "accuracy", Metric.SQUAD: "f1",
         Metric.RETRIEVAL_ACCURACY: "accuracy", Metric.BUCC_F1: "f1"}


def _check(predictions: Sequence, references: Sequence) -> None:
    if len(references) == 0:
        raise ValueError("no examples to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Share of examples whose predicted label equals the reference: `{"accuracy"}`."""
    _check(predictions, references)
    correct = sum(p == r for p, r in zip(predictions, references))
    return {"accuracy": 100.0 * correct / len(references)}


def seqeval_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision/recall/F1 of BIO tag sequences via seqeval's default
    (conlleval-compatible) mode, as XTREME's run_tag.py: `{"f1", "precision", "recall"}`."""
    _check(predictions, references)
    for p, r in zip(predictions, references):
        if len(p) != len(r):
            raise ValueError(f"sentence of {len(p)} predicted tags but {len(r)} reference tags")
    y_true, y_pred = [list(r) for r in references], [list(p) for p in predictions]
    return {
        "f1": 100.0 * float(f1_score(y_true, y_pred, zero_division=0)),
        "precision": 100.0 * float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": 100.0 * float(recall_score(y_true, y_pred, zero_division=0)),
    }


def token_accuracy(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Accuracy over all tokens of all sentences pooled together (POS, as XTREME): `{"accuracy"}`."""
    _check(predictions, references)
    for p, r in zip(predictions, references):
        if len(p) != len(r):
            raise ValueError(f"sentence of {len(p)} predicted tags but {len(r)} reference tags")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("no examples to score")
    correct = sum(a == b for p, r in zip(predictions, references) for a, b in zip(p, r))
    return {"accuracy": 100.0 * correct / total}


# --- SQuAD v1.1 evaluate-v1.1.py, generalised to other languages as in MLQA's mlqa_evaluation_v1.py ---

def _is_punct(char: str) -> bool:
    """MLQA's PUNCT set: unicode categories P* plus `string.punctuation` (which adds $+<=>^`|~)."""
    return unicodedata.category(char).startswith("P") or char in string.punctuation


ARTICLES: dict[str, tuple[str, ...]] = {
    "en": ("a", "an", "the"),
    "es": ("un", "una", "unos", "unas", "el", "la", "los", "las"),
    "de": ("der", "die", "das", "des", "dem", "den", "ein", "eine", "einer", "eines", "einem", "einen"),
    "ar": ("\u0627\u0644",),
    "vi": (),
    "zh": (),
    "hi": (),
}
MIXED_SEGMENTATION = frozenset({"zh"})
_CJK = re.compile("[\u4e00-\u9fa5]")  # MLQA's CJK range


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA: every CJK character and punctuation mark is a token; other runs split on whitespace."""
    tokens: list[str] = []
    run = ""
    for char in text:
        if _CJK.match(char) or _is_punct(char):
            tokens.extend(run.split())
            run = ""
            tokens.append(char)
        else:
            run += char
    tokens.extend(run.split())
    return tokens


def _tokens(text: str, lang: str | None) -> list[str]:
    """Normalised tokens: lowercase, drop punctuation, drop standalone articles, then segment.
    `lang=None` means English (plain SQuAD v1.1); a language without an entry has no articles."""
    lang = lang or "en"
    text = "".join(ch for ch in text.lower() if not _is_punct(ch))
    articles = ARTICLES.get(lang, ())
    if articles:
        text = re.sub(r"(?<!\w)(?:" + "|".join(map(re.escape, articles)) + r")(?!\w)", " ", text)
    return _mixed_segmentation(text) if lang in MIXED_SEGMENTATION else text.split()


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:  # SQuAD v2: "no answer" is right only against "no answer"
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], lang: str | None = None
) -> dict[str, float]:
    """SQuAD v1.1 exact match and token F1, each the max over an id's gold answers, averaged over the
    reference ids (an id without prediction scores 0; predictions for unknown ids are ignored). An id
    with no gold answer (SQuAD v2.0 unanswerable) scores 1 exactly when the prediction is empty.
    Normalisation and Chinese mixed segmentation follow MLQA: `{"exact_match", "f1"}`."""
    if len(references) == 0:
        raise ValueError("no examples to score")
    em = f1 = 0.0
    for qid, golds in references.items():
        if qid not in predictions:
            continue
        golds = list(golds) or [""]
        pred = _tokens(predictions[qid], lang)
        gold_tokens = [_tokens(g, lang) for g in golds]
        em += max(float(pred == g) for g in gold_tokens)
        f1 += max(_f1(pred, g) for g in gold_tokens)
    return {"exact_match": 100.0 * em / len(references), "f1": 100.0 * f1 / len(references)}


_METRICS: dict[Metric, Callable[..., dict[str, float]]] = {
    Metric.ACCURACY: accuracy,
    Metric.SEQEVAL_F1: seqeval_f1,
    Metric.TOKEN_ACCURACY: token_accuracy,
    Metric.SQUAD: squad,
}


def compute(metric: Metric, predictions, references, lang: str | None = None) -> dict[str, float]:
    """Score `predictions` against `references` with `metric`; `lang` only matters for SQuAD."""
    metric = Metric(metric)
    if metric not in _METRICS:
        raise ValueError(f"{metric.value} is computed from embeddings by stepstone.retrieval")
    extra = {"lang": lang} if metric is Metric.SQUAD else {}
    return _METRICS[metric](predictions, references, **extra)
