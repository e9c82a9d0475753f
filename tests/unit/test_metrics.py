"""Hand-computed checks for stepstone.metrics."""
import pytest

from stepstone.metrics import Metric, accuracy, compute, seqeval_f1, squad, token_accuracy


def test_accuracy():
    assert accuracy([1, 0, 2], [1, 0, 1]) == {"accuracy": pytest.approx(200 / 3)}


def test_seqeval_f1_entity_level():
    refs = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"]]
    preds = [["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"]]
    # gold: PER(0-1), LOC(3-4), ORG(6); predicted: PER(0-1), LOC(3) -- wrong boundary, ORG missed.
    # correct = 1 -> P = 1/2, R = 1/3, F1 = 2 * (1/2 * 1/3) / (1/2 + 1/3) = 2/5
    out = seqeval_f1(preds, refs)
    assert out == {"f1": pytest.approx(40.0), "precision": pytest.approx(50.0), "recall": pytest.approx(100 / 3)}


def test_token_accuracy_pools_all_tokens():
    refs = [["NOUN", "VERB", "DET"], ["NOUN", "PUNCT"]]
    preds = [["NOUN", "VERB", "NOUN"], ["NOUN", "PUNCT"]]
    assert token_accuracy(preds, refs) == {"accuracy": pytest.approx(80.0)}  # 4 of 5 tokens


@pytest.mark.parametrize(
    "pred, golds, em, f1",
    [
        ("Denver Broncos", ["Denver Broncos"], 100.0, 100.0),
        # tokens [big, red, dog] vs [red, dog]: P = 2/3, R = 1, F1 = 0.8
        ("the big red dog", ["red dog"], 0.0, 80.0),
        # max over golds: "a cat" -> 0; "big red dog" -> P = 1, R = 2/3, F1 = 0.8
        ("red dog", ["a cat", "big red dog"], 0.0, 80.0),
        ("red dog", ["big red dog", "Red dog."], 100.0, 100.0),
        ("The Eiffel Tower!", ["eiffel tower"], 100.0, 100.0),  # case, punctuation, article
        ("nothing in common", ["red dog"], 0.0, 0.0),
    ],
)
def test_squad_single_question(pred, golds, em, f1):
    out = squad({"q": pred}, {"q": golds})
    assert out == {"exact_match": pytest.approx(em), "f1": pytest.approx(f1)}


def test_squad_missing_prediction_counts_zero_and_extra_ignored():
    out = squad({"q1": "Paris", "other": "x"}, {"q1": ["Paris"], "q2": ["Rome"]})
    assert out == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(50.0)}


def test_squad_german_articles_and_unicode_punctuation():
    assert squad({"q": "die Hauptstadt"}, {"q": ["«Hauptstadt»"]}, lang="de")["exact_match"] == 100.0
    # without lang, English rules keep "die": tokens [die, hauptstadt] vs [hauptstadt] -> F1 = 2/3
    assert squad({"q": "die Hauptstadt"}, {"q": ["Hauptstadt"]}) == {
        "exact_match": 0.0,
        "f1": pytest.approx(200 / 3),
    }


def test_squad_arabic_standalone_article_only():
    assert squad({"q": "ال كتاب"}, {"q": ["كتاب"]}, lang="ar")["exact_match"] == 100.0
    assert squad({"q": "الكتاب"}, {"q": ["كتاب"]}, lang="ar")["exact_match"] == 0.0


def test_squad_chinese_mixed_segmentation():
    # characters [北, 京, 大, 学] vs [北, 京]: P = 2/4, R = 1, F1 = 2/3
    assert squad({"q": "北京大学"}, {"q": ["北京"]}, lang="zh")["f1"] == pytest.approx(200 / 3)
    # non-CJK runs stay whitespace tokens: [2008, 年] vs [2008]: P = 1/2, R = 1, F1 = 2/3
    assert squad({"q": "2008年。"}, {"q": ["2008"]}, lang="zh")["f1"] == pytest.approx(200 / 3)
    assert squad({"q": "北京大学"}, {"q": ["北京"]})["f1"] == 0.0  # whitespace tokens differ


@pytest.mark.parametrize("fn", [accuracy, seqeval_f1, token_accuracy])
def test_empty_and_mismatched_inputs(fn):
    with pytest.raises(ValueError, match="no examples to score"):
        fn([], [])
    with pytest.raises(ValueError, match=r"(?s)2.*3"):
        fn([["O"], ["O"]], [["O"], ["O"], ["O"]])
    with pytest.raises(ValueError, match="no examples to score"):
        squad({}, {})


def test_compute_dispatch_and_main():
    assert compute(Metric.ACCURACY, [1, 1], [1, 0]) == {"accuracy": 50.0}
    assert compute("token_accuracy", [["A"]], [["A"]]) == {"accuracy": 100.0}
    assert compute(Metric.SQUAD, {"q": "北京大学"}, {"q": ["北京"]}, lang="zh")["f1"] == pytest.approx(200 / 3)
    assert compute(Metric.SEQEVAL_F1, [["B-PER"]], [["B-PER"]])["f1"] == 100.0
    assert {m: m.main for m in Metric} == {
        Metric.ACCURACY: "accuracy",
        Metric.SEQEVAL_F1: "f1",
        Metric.TOKEN_ACCURACY: "accuracy",
        Metric.SQUAD: "f1",
        Metric.RETRIEVAL_ACCURACY: "accuracy",
        Metric.BUCC_F1: "f1",
    }
    with pytest.raises(ValueError, match="computed from embeddings"):
        compute(Metric.BUCC_F1, [1], [1])


def test_squad_v2_unanswerable_scores_only_an_empty_prediction():
    refs = {"a": [], "b": []}
    assert squad({"a": "", "b": "Paris"}, refs) == {"exact_match": 50.0, "f1": 50.0}
