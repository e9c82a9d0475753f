"""Evaluation metrics, exactly as the official scorers compute them.

The reference for every XTREME target is google-research/xtreme's `evaluate.py` (`METRIC_FUNCTION`): accuracy for
XNLI, PAWS-X and Tatoeba; seqeval F1 / precision / recall for PAN-X *and* UD-POS; BUCC F1; for QA its two
third-party scripts, SQuAD v1.1's `evaluate-v1.1.py` (XQuAD, TyDiQA-GoldP) and MLQA's `mlqa_evaluation_v1.py`
(MLQA, by answer language). XCOPA (XTREME-R) is accuracy. `Metric.reference` names each one's source.

Every metric returns a plain dict of floats in percent (0-100), unrounded. `Metric.main` names the headline key of
that dict. Empty inputs and inputs of different lengths raise `ValueError`.

`statistics` gives the main metric's additive per-example statistics (one row per example: a sentence, a question),
whose sum over any subset of the examples scores that subset exactly (`Metric.statistic` names how): what the
paired bootstrap of stepstone.experiments.stats resamples.
"""
from __future__ import annotations

import re
import string
import unicodedata
import warnings
from collections import Counter
from enum import Enum
from typing import Callable, Mapping, Sequence

import numpy as np


class Metric(str, Enum):
    ACCURACY = "accuracy"  # sequence classification, multiple choice
    SEQEVAL_F1 = "seqeval_f1"  # entity-level F1 for BIO-tagged NER (seqeval default mode, as XTREME)
    POS_F1 = "pos_f1"  # POS tagging as XTREME scores it: seqeval F1 on the raw tags, with token accuracy beside it
    TOKEN_ACCURACY = "token_accuracy"  # accuracy over all tokens (CCG supertags: not an XTREME task)
    SQUAD = "squad"  # extractive QA: SQuAD v1.1 exact match + token F1, max over gold answers, English rules
    MLQA = "mlqa"  # MLQA: the same with normalisation by the answer (context) language
    RETRIEVAL_ACCURACY = "retrieval_accuracy"  # Tatoeba: top-1 xx -> en (stepstone.retrieval)
    BUCC_F1 = "bucc_f1"  # BUCC: mining F1 at the best margin threshold (stepstone.retrieval)

    @property
    def main(self) -> str:
        """Key of the headline number in this metric's result dict."""
        return _MAIN[self]

    @property
    def baseline_key(self) -> str:
        """The key stepstone.health holds against chance and the majority class: the metric's accuracy where it
        reports one (chance, 100 / classes, is an accuracy; under seqeval's chunking a constant tag sequence is one
        chunk per sentence, so the majority tag's F1 is ~0 and cannot tell a run that learned nothing), else `main`."""
        return "accuracy" if self is Metric.POS_F1 else self.main

    @property
    def statistic(self) -> str:
        """How `statistics`' per-example rows give the main metric: "ratio" (100 x sum of column 0 / sum of column
        1: accuracy, token accuracy, QA F1) or "f1" (true positives, false positives, false negatives -> F1)."""
        return "f1" if self in (Metric.SEQEVAL_F1, Metric.POS_F1) else "ratio"

    @property
    def reference(self) -> str:
        """The official scorer this metric reproduces (the README's task table)."""
        return _REFERENCE[self]


_MAIN = {Metric.ACCURACY: "accuracy", Metric.SEQEVAL_F1: "f1", Metric.POS_F1: "f1", Metric.TOKEN_ACCURACY: "accuracy",
         Metric.SQUAD: "f1", Metric.MLQA: "f1", Metric.RETRIEVAL_ACCURACY: "accuracy", Metric.BUCC_F1: "f1"}
_REFERENCE = {
    Metric.ACCURACY: "XTREME evaluate.py: accuracy",
    Metric.SEQEVAL_F1: "XTREME evaluate.py: seqeval f1",
    Metric.POS_F1: "XTREME evaluate.py: seqeval f1 (+ token accuracy)",
    Metric.TOKEN_ACCURACY: "token accuracy (no XTREME script)",
    Metric.SQUAD: "SQuAD v1.1 evaluate-v1.1.py",
    Metric.MLQA: "MLQA mlqa_evaluation_v1.py",
    Metric.RETRIEVAL_ACCURACY: "XTREME evaluate.py: accuracy (tatoeba)",
    Metric.BUCC_F1: "XTREME evaluate.py: bucc_f1",
}


def _check(predictions: Sequence, references: Sequence) -> None:
    if len(references) == 0:
        raise ValueError("no examples to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _check_sentences(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> None:
    _check(predictions, references)
    for p, r in zip(predictions, references):
        if len(p) != len(r):
            raise ValueError(f"sentence of {len(p)} predicted tags but {len(r)} reference tags")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Share of examples whose predicted label equals the reference: `{"accuracy"}`."""
    _check(predictions, references)
    correct = sum(p == r for p, r in zip(predictions, references))
    return {"accuracy": 100.0 * correct / len(references)}


def seqeval_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 of the chunks seqeval's default (conlleval-compatible) mode reads from the tag
    sequences, as XTREME's evaluate.py `f1` (`{"f1", "precision", "recall"}`). Any tag string is read as seqeval
    reads it: a tag without a `B-`/`I-` prefix (a POS tag) is its first character as the chunk tag and the rest
    as the type, so consecutive equal tags form one chunk (seqeval 1.2's rule)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    _check_sentences(predictions, references)
    y_true, y_pred = [list(r) for r in references], [list(p) for p in predictions]
    with warnings.catch_warnings():  # POS tags are read as chunks on purpose: "NOUN seems not to be NE tag"
        warnings.filterwarnings("ignore", message=r".* seems not to be NE tag\.", category=UserWarning)
        return {
            "f1": 100.0 * float(f1_score(y_true, y_pred, zero_division=0)),
            "precision": 100.0 * float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": 100.0 * float(recall_score(y_true, y_pred, zero_division=0)),
        }


def token_accuracy(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Accuracy over all tokens of all sentences pooled together: `{"accuracy"}`."""
    _check_sentences(predictions, references)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("no examples to score")
    correct = sum(a == b for p, r in zip(predictions, references) for a, b in zip(p, r))
    return {"accuracy": 100.0 * correct / total}


def pos_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """UD-POS as XTREME's evaluate.py scores it (seqeval F1 / precision / recall of the raw tags, main `f1`),
    with token accuracy beside it: `{"f1", "precision", "recall", "accuracy"}`."""
    return {**seqeval_f1(predictions, references), **token_accuracy(predictions, references)}


# --- QA: SQuAD v1.1 evaluate-v1.1.py (XTREME's third_party/evaluate_squad.py: XQuAD, TyDiQA-GoldP) and MLQA's
# --- mlqa_evaluation_v1.py (XTREME's third_party/evaluate_mlqa.py: MLQA, called with the language)

SQUAD_PUNCTUATION = frozenset(string.punctuation)  # evaluate-v1.1.py removes ASCII punctuation only
SQUAD_ARTICLES = r"\b(a|an|the)\b"
# mlqa_evaluation_v1.py's remove_articles, pattern for pattern. Arabic's first alternative can never match (`^`
# after two letters) and the second removes the letters "ال" wherever they occur, inside words too: as the script.
MLQA_ARTICLES: dict[str, str | None] = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "hi": None,
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": "\\sال^|ال",
    "zh": None,
}
MLQA_MIXED_SEGMENTATION = frozenset({"zh"})
_CJK = re.compile("[\u4e00-\u9fa5]")  # MLQA's CJK range


def _is_mlqa_punct(char: str) -> bool:
    """MLQA's PUNCT set: unicode categories P* plus `string.punctuation` (which adds $+<=>^`|~)."""
    return unicodedata.category(char).startswith("P") or char in SQUAD_PUNCTUATION


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA: every CJK character and punctuation mark is a token; other runs split on whitespace."""
    tokens: list[str] = []
    run = ""
    for char in text:
        if _CJK.match(char) or _is_mlqa_punct(char):
            tokens.extend(run.split())
            run = ""
            tokens.append(char)
        else:
            run += char
    tokens.extend(run.split())
    return tokens


def _squad_tokens(text: str) -> list[str]:
    """evaluate-v1.1.py's normalize_answer, split: lowercase, drop ASCII punctuation, drop a/an/the."""
    text = "".join(ch for ch in text.lower() if ch not in SQUAD_PUNCTUATION)
    return re.sub(SQUAD_ARTICLES, " ", text).split()


def _mlqa_tokens(text: str, lang: str) -> list[str]:
    """mlqa_evaluation_v1.py's normalize_answer for `lang`, split. A language the script does not know (it
    raises) keeps its articles and splits on whitespace."""
    text = "".join(ch for ch in text.lower() if not _is_mlqa_punct(ch))
    pattern = MLQA_ARTICLES.get(lang)
    if pattern:
        text = re.sub(pattern, " ", text)
    tokens = _mixed_segmentation(text) if lang in MLQA_MIXED_SEGMENTATION else text.split()
    return [t for t in tokens if t.strip()]


def _f1(pred: list[str], gold: list[str]) -> float:
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:  # both scripts: also when both are empty
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], lang: str | None = None
) -> dict[str, float]:
    """Exact match and token F1, each the max over an id's gold answers, averaged over the reference ids (an id
    without prediction scores 0; predictions for unknown ids are ignored): `{"exact_match", "f1"}`. Answers are
    normalised as SQuAD v1.1's evaluate-v1.1.py does (`lang=None`), or as MLQA's mlqa_evaluation_v1.py does for
    answer language `lang`. An id with no gold answer (SQuAD v2.0 unanswerable) scores 1 on both exactly when
    the prediction normalises to nothing (evaluate-v2.0.py's rule)."""
    per_id = _qa_scores(predictions, references, lang)
    return {"exact_match": 100.0 * sum(em for em, _ in per_id) / len(per_id),
            "f1": 100.0 * sum(f1 for _, f1 in per_id) / len(per_id)}


def _qa_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
               lang: str | None) -> list[tuple[float, float]]:
    """(exact match, F1) of every reference id, in the references' order, each in [0, 1] (`squad`'s rules)."""
    if len(references) == 0:
        raise ValueError("no examples to score")
    tokens = _squad_tokens if lang is None else (lambda text: _mlqa_tokens(text, lang))
    scores = []
    for qid, golds in references.items():
        if qid not in predictions:
            scores.append((0.0, 0.0))
            continue
        pred = tokens(predictions[qid])
        if not golds:
            scores.append((float(not pred), float(not pred)))
            continue
        gold_tokens = [tokens(g) for g in golds]
        scores.append((max(float(pred == g) for g in gold_tokens), max(_f1(pred, g) for g in gold_tokens)))
    return scores


def mlqa(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], lang: str) -> dict[str, float]:
    """MLQA's mlqa_evaluation_v1.py for answer language `lang` (a context.question pair: the context's)."""
    return squad(predictions, references, lang=lang)


_METRICS: dict[Metric, Callable[..., dict[str, float]]] = {
    Metric.ACCURACY: accuracy,
    Metric.SEQEVAL_F1: seqeval_f1,
    Metric.POS_F1: pos_f1,
    Metric.TOKEN_ACCURACY: token_accuracy,
    Metric.SQUAD: squad,
    Metric.MLQA: mlqa,
}
_BY_LANGUAGE = frozenset({Metric.MLQA})  # the metrics whose scoring depends on the language


def compute(metric: Metric, predictions, references, lang: str | None = None) -> dict[str, float]:
    """Score `predictions` against `references` with `metric`; `lang` only matters for MLQA (which needs it)."""
    metric = Metric(metric)
    if metric not in _METRICS:
        raise ValueError(f"{metric.value} is computed from embeddings by stepstone.retrieval")
    if metric not in _BY_LANGUAGE:
        return _METRICS[metric](predictions, references)
    return _METRICS[metric](predictions, references, lang=_rules_language(metric, lang))


def _rules_language(metric: Metric, lang: str | None) -> str:
    """The language whose rules a by-language metric applies: MLQA's language pairs are "context.question", and
    normalisation follows the context (the answer's language)."""
    if lang is None:
        raise ValueError(f"{metric.value} scores by language: pass lang")
    return lang.split(".")[0]


def statistics(metric: Metric, predictions, references, lang: str | None = None) -> np.ndarray:
    """The main metric's per-example statistics, [examples, k] (module docstring; `Metric.statistic`): accuracy
    (correct, 1) per example; seqeval F1 (chunks right, chunks predicted but wrong, gold chunks missed) per
    sentence, which sum to the micro counts seqeval scores (its chunks never cross a sentence); token accuracy
    (tokens right, tokens) per sentence; QA F1 (F1 in [0, 1], 1) per question. Retrieval metrics have none."""
    metric = Metric(metric)
    if metric is Metric.ACCURACY:
        _check(predictions, references)
        return np.array([[float(p == r), 1.0] for p, r in zip(predictions, references)])
    if metric in (Metric.SEQEVAL_F1, Metric.POS_F1):
        return _chunk_counts(predictions, references)
    if metric is Metric.TOKEN_ACCURACY:
        _check_sentences(predictions, references)
        return np.array([[float(sum(a == b for a, b in zip(p, r))), float(len(r))]
                         for p, r in zip(predictions, references)])
    if metric in (Metric.SQUAD, Metric.MLQA):
        lang = _rules_language(metric, lang) if metric in _BY_LANGUAGE else None
        return np.array([[f1, 1.0] for _, f1 in _qa_scores(predictions, references, lang)])
    raise ValueError(f"{metric.value} is computed from embeddings by stepstone.retrieval: it has no per-example "
                     "statistics")


def _chunk_counts(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> np.ndarray:
    """Per sentence: (true positives, false positives, false negatives) of the chunks seqeval's default mode reads."""
    from seqeval.metrics.sequence_labeling import get_entities

    _check_sentences(predictions, references)
    rows = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".* seems not to be NE tag\.", category=UserWarning)
        for p, r in zip(predictions, references):
            pred, gold = set(get_entities(list(p))), set(get_entities(list(r)))
            tp = len(pred & gold)
            rows.append([float(tp), float(len(pred) - tp), float(len(gold) - tp)])
    return np.array(rows).reshape(-1, 3)
