"""Hand-computed checks for stepstone.metrics."""
import pytest

from stepstone.metrics import Metric, accuracy, compute, pos_f1, seqeval_f1, squad, token_accuracy


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


def test_squad_arabic_article_removed_wherever_it_occurs():
    assert squad({"q": "ال كتاب"}, {"q": ["كتاب"]}, lang="ar")["exact_match"] == 100.0
    # mlqa_evaluation_v1.py's re.sub('\\sال^|ال', ' ', text) removes "ال" inside words too (issue 16)
    assert squad({"q": "الكتاب"}, {"q": ["كتاب"]}, lang="ar")["exact_match"] == 100.0


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
    assert compute(Metric.MLQA, {"q": "北京大学"}, {"q": ["北京"]}, lang="zh")["f1"] == pytest.approx(200 / 3)
    assert compute(Metric.SEQEVAL_F1, [["B-PER"]], [["B-PER"]])["f1"] == 100.0
    assert {m: m.main for m in Metric} == {
        Metric.ACCURACY: "accuracy",
        Metric.SEQEVAL_F1: "f1",
        Metric.POS_F1: "f1",
        Metric.TOKEN_ACCURACY: "accuracy",
        Metric.SQUAD: "f1",
        Metric.MLQA: "f1",
        Metric.RETRIEVAL_ACCURACY: "accuracy",
        Metric.BUCC_F1: "f1",
    }
    with pytest.raises(ValueError, match="computed from embeddings"):
        compute(Metric.BUCC_F1, [1], [1])


def test_squad_v2_unanswerable_scores_only_an_empty_prediction():
    refs = {"a": [], "b": []}
    assert squad({"a": "", "b": "Paris"}, refs) == {"exact_match": 50.0, "f1": 50.0}


# ---- XTREME-exact scores (issue 16): each target as google-research/xtreme's evaluate.py scores it
def seqeval_direct(preds, refs) -> dict[str, float]:
    """seqeval itself, called as XTREME's evaluate.py `f1` calls it (warnings about POS tags silenced here only)."""
    import warnings

    from seqeval.metrics import f1_score, precision_score, recall_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"f1": 100 * f1_score(refs, preds), "precision": 100 * precision_score(refs, preds),
                "recall": 100 * recall_score(refs, preds)}


def test_pos_f1_is_seqeval_on_the_raw_tags_with_token_accuracy_beside_it():
    refs = [["DET", "NOUN", "NOUN", "VERB", "PUNCT"]]
    preds = [["DET", "NOUN", "VERB", "VERB", "PUNCT"]]
    # seqeval 1.2 reads a tag without B-/I- as chunk tag = its first letter, type = the rest; equal neighbours merge.
    # gold chunks: ET(0), OUN(1-2), ERB(3), UNCT(4); predicted: ET(0), OUN(1), ERB(2-3), UNCT(4): 2 of 4 right ->
    # P = R = F1 = 1/2, while 4 of 5 tokens are right
    out = pos_f1(preds, refs)
    assert out == {"f1": 50.0, "precision": 50.0, "recall": 50.0, "accuracy": 80.0}
    assert {k: out[k] for k in ("f1", "precision", "recall")} == pytest.approx(seqeval_direct(preds, refs))
    assert compute(Metric.POS_F1, preds, refs) == out and Metric.POS_F1.main == "f1"


def test_pos_f1_follows_seqeval_where_it_reads_pos_tags_oddly():
    # CCONJ and SCONJ are both of type "CONJ" (S- opens a single-token chunk): confusing them is not an error
    assert pos_f1([["CCONJ"]], [["SCONJ"]]) == {"f1": 100.0, "precision": 100.0, "recall": 100.0, "accuracy": 0.0}
    # sentences: gold NOUN | VERB X, predicted NOUN | VERB VERB. Gold chunks OUN(0), ERB(2), and X at a
    # sentence end has type "_" like the "O" seqeval puts between sentences, so it never closes: 2 gold chunks;
    # predicted OUN(0), ERB(2-3) (positions count the "O" between sentences): 1 right -> P = R = F1 = 1/2; 2 of 3
    # tokens right
    refs, preds = [["NOUN"], ["VERB", "X"]], [["NOUN"], ["VERB", "VERB"]]
    out = pos_f1(preds, refs)
    assert out == {"f1": 50.0, "precision": 50.0, "recall": 50.0, "accuracy": pytest.approx(200 / 3)}
    assert {k: out[k] for k in ("f1", "precision", "recall")} == pytest.approx(seqeval_direct(preds, refs))


def test_seqeval_warnings_about_pos_tags_are_silenced_locally_only():
    import warnings

    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pos_f1([["NOUN", "VERB"]], [["NOUN", "ADJ"]])
        assert seen == []
        warnings.warn("NOUN seems not to be NE tag.", UserWarning)  # anyone else's warning still shows
        assert [str(w.message) for w in seen] == ["NOUN seems not to be NE tag."]
    assert warnings.filters == before


def test_each_target_declares_the_metric_of_its_official_script():
    from stepstone.tasks import get_task

    declared = {name: get_task(name).metric for name in ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa",
                                                         "tydiqa", "bucc", "tatoeba", "xcopa", "ccg", "squad")}
    assert declared == {"xnli": Metric.ACCURACY, "pawsx": Metric.ACCURACY, "udpos": Metric.POS_F1,
                        "panx": Metric.SEQEVAL_F1, "xquad": Metric.SQUAD, "mlqa": Metric.MLQA,
                        "tydiqa": Metric.SQUAD, "bucc": Metric.BUCC_F1, "tatoeba": Metric.RETRIEVAL_ACCURACY,
                        "xcopa": Metric.ACCURACY, "ccg": Metric.TOKEN_ACCURACY, "squad": Metric.SQUAD}
    assert {m: m.reference for m in Metric} == {
        Metric.ACCURACY: "XTREME evaluate.py: accuracy",
        Metric.SEQEVAL_F1: "XTREME evaluate.py: seqeval f1",
        Metric.POS_F1: "XTREME evaluate.py: seqeval f1 (+ token accuracy)",
        Metric.TOKEN_ACCURACY: "token accuracy (no XTREME script)",
        Metric.SQUAD: "SQuAD v1.1 evaluate-v1.1.py",
        Metric.MLQA: "MLQA mlqa_evaluation_v1.py",
        Metric.RETRIEVAL_ACCURACY: "XTREME evaluate.py: accuracy (tatoeba)",
        Metric.BUCC_F1: "XTREME evaluate.py: bucc_f1",
    }
    assert {m: m.baseline_key for m in Metric if m.baseline_key != m.main} == {Metric.POS_F1: "accuracy"}


@pytest.mark.parametrize("task, lang, em", [
    ("xquad", "zh", 0.0), ("tydiqa", "ar", 0.0), ("squad", "en", 0.0),  # SQuAD v1.1 whatever the language
    ("mlqa", "zh", 100.0), ("mlqa", "ar", 100.0)])
def test_qa_tasks_normalise_as_their_scripts(task, lang, em):
    """XTREME scores XQuAD and TyDiQA-GoldP with evaluate-v1.1.py (ASCII punctuation, English articles,
    whitespace tokens in every language) and MLQA with mlqa_evaluation_v1.py by language."""
    from stepstone.tasks import get_task

    answers = {"zh": ("北京。", "北京"), "ar": ("«الكتاب»", "كتاب"), "en": ("«Paris»", "Paris")}
    pred, gold = answers[lang]
    assert compute(get_task(task).metric, {"q": pred}, {"q": [gold]}, lang=lang)["exact_match"] == em


def test_squad_v1_1_removes_ascii_punctuation_only():
    assert squad({"q": "«Hauptstadt»"}, {"q": ["Hauptstadt"]}) == {"exact_match": 0.0, "f1": 0.0}
    assert squad({"q": "Paris!"}, {"q": ["the paris"]}) == {"exact_match": 100.0, "f1": 100.0}
    # both normalise to nothing: evaluate-v1.1.py counts the exact match and no common token (F1 0)
    assert squad({"q": "the"}, {"q": ["a"]}) == {"exact_match": 100.0, "f1": 0.0}


def test_mlqa_languages():
    assert squad({"q": "những con mèo"}, {"q": ["con mèo"]}, lang="vi")["exact_match"] == 100.0  # vi articles
    assert squad({"q": "el gato"}, {"q": ["gato"]}, lang="es")["exact_match"] == 100.0
    assert squad({"q": "le chat"}, {"q": ["chat"]}, lang="fr")["exact_match"] == 0.0  # not a language of the script
    with pytest.raises(ValueError, match="mlqa scores by language: pass lang"):
        compute(Metric.MLQA, {"q": "a"}, {"q": ["a"]})


# --- per-example statistics (the paired bootstrap's input): their sum scores the examples exactly

def test_statistics_sum_to_every_metric_exactly():
    import random

    import numpy as np

    from stepstone.experiments.stats import METRICS
    from stepstone.metrics import statistics

    rng = random.Random(0)
    ner = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"]
    pos = ["NOUN", "VERB", "DET", "ADJ"]

    def sentences(tags, n):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(n)]
        return [[t if rng.random() < 0.6 else rng.choice(tags) for t in s] for s in gold], gold

    labels = [rng.randrange(3) for _ in range(200)]
    cases = {Metric.ACCURACY: ([p if rng.random() < 0.5 else rng.randrange(3) for p in labels], labels, None),
             Metric.SEQEVAL_F1: (*sentences(ner, 150), None), Metric.POS_F1: (*sentences(pos, 150), None),
             Metric.TOKEN_ACCURACY: (*sentences(pos, 150), None)}
    words = "the red dog ran far away a cat sat".split()
    golds = {f"q{i}": [" ".join(rng.sample(words, rng.randint(1, 3)))] for i in range(100)}
    guesses = {q: " ".join(rng.sample(words, rng.randint(1, 3))) for q in list(golds)[:90]}  # 10 unanswered
    cases[Metric.SQUAD] = (guesses, golds, None)
    cases[Metric.MLQA] = (guesses, golds, "de.en")
    for metric, (predictions, references, lang) in cases.items():
        rows = statistics(metric, predictions, references, lang)
        assert rows.shape == (len(references), 3 if metric.statistic == "f1" else 2), metric
        expected = compute(metric, predictions, references, lang)[metric.main]
        assert float(METRICS[metric.statistic](rows.sum(axis=0))) == pytest.approx(expected, rel=1e-12), metric
        half = rows[: len(rows) // 2]  # any subset: here the first half, scored on its own
        part = compute(metric, *(_front(x, len(half)) for x in (predictions, references)), lang)[metric.main]
        assert float(METRICS[metric.statistic](half.sum(axis=0))) == pytest.approx(part, rel=1e-12), metric
        assert np.all(rows >= 0)


def _front(values, n):
    """The first n examples (a QA dict: its first n reference ids, predictions of those only)."""
    if isinstance(values, dict):
        return dict(list(values.items())[:n])
    return values[:n]


def test_statistics_of_one_sentence_count_its_chunks():
    from stepstone.metrics import statistics

    refs = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"]]
    preds = [["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"]]  # PER right, LOC cut short, ORG missed
    assert statistics(Metric.SEQEVAL_F1, preds, refs).tolist() == [[1.0, 1.0, 2.0]]
    assert statistics(Metric.ACCURACY, [1, 0, 2], [1, 0, 1]).tolist() == [[1, 1], [1, 1], [0, 1]]
    assert statistics(Metric.SQUAD, {"q": "the big red dog"}, {"q": ["red dog"]}).tolist() == [[pytest.approx(0.8), 1]]


def test_retrieval_metrics_have_no_per_example_statistics():
    from stepstone.metrics import statistics

    with pytest.raises(ValueError, match="no per-example"):
        statistics(Metric.BUCC_F1, [], [])
