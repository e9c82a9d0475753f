"""Retrieval (Tatoeba accuracy, BUCC margin mining and F1) on hand-made vectors, and `embed` on `tiny`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stepstone import methods, retrieval
from stepstone.backbone import load_backbone
from stepstone.data.readers import BuccData
from stepstone.errors import StepstoneError
from stepstone.retrieval import (
    Pooling, RetrievalSettings, bucc_f1, bucc_mine, default_layer, embed, evaluate_bucc, evaluate_tatoeba, knn_means,
    tatoeba_accuracy,
)
from stepstone.specs import BackboneSpec, MethodSpec


def unit(*rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------- layers
def test_default_layer_scales_xtreme_14_of_24():
    assert default_layer(24) == 14
    assert default_layer(12) == 7
    assert default_layer(2) == 1
    assert default_layer(6) == 4  # 3.5: half up
    assert default_layer(18) == 11  # 10.5: half up (Python's round() would give 10)


def test_settings():
    assert RetrievalSettings().pooling is Pooling.MEAN
    assert RetrievalSettings(pooling="mean").pooling is Pooling.MEAN
    with pytest.raises(StepstoneError, match="unknown pooling 'max'"):
        RetrievalSettings(pooling="max")
    with pytest.raises(StepstoneError, match="batch_size"):
        RetrievalSettings(batch_size=0)


# ----------------------------------------------------------------------------------------- Tatoeba
def test_tatoeba_accuracy_by_hand():
    english = unit([1, 0], [0, 1], [-1, 0])
    # row 0 -> nearest e0 (right), row 1 -> nearest e1 (right), row 2 (0.6, 0.8) -> nearest e1 (wrong: e2)
    source = unit([0.9, 0.1], [0.1, 0.9], [0.6, 0.8])
    assert tatoeba_accuracy(source, english) == {"accuracy": pytest.approx(200 / 3)}
    assert tatoeba_accuracy(english, english) == {"accuracy": 100.0}
    with pytest.raises(StepstoneError, match="aligned"):
        tatoeba_accuracy(source, english[:2])


def test_tatoeba_accuracy_is_chunk_independent(monkeypatch):
    rng = np.random.default_rng(0)
    a = unit(*rng.normal(size=(50, 8)))
    b = unit(*(a + rng.normal(scale=0.3, size=a.shape)))
    full = tatoeba_accuracy(a, b)
    monkeypatch.setattr(retrieval, "CHUNK_ROWS", 7)
    assert tatoeba_accuracy(a, b) == full
    assert 0 < full["accuracy"] <= 100


# ----------------------------------------------------------------------------------------- margin
# source x1 = (1, 0), x2 = (0.8, 0.6); target y1 = (1, 0), y2 = (0, 1)
# cos: x1.y1 = 1, x1.y2 = 0, x2.y1 = 0.8, x2.y2 = 0.6
# k = 1: knn(x1) = 1, knn(x2) = 0.8; knn(y1) = max(1, 0.8) = 1, knn(y2) = max(0, 0.6) = 0.6
#   margin(x1, y1) = 1 / ((1 + 1) / 2) = 1;  margin(x2, y1) = 0.8 / ((0.8 + 1) / 2) = 0.8889
#   margin(x2, y2) = 0.6 / ((0.8 + 0.6) / 2) = 0.8571  -> x2 mines y1 (as cosine would)
# k = 2: knn(x1) = (1 + 0) / 2 = 0.5, knn(x2) = (0.8 + 0.6) / 2 = 0.7; knn(y1) = (1 + 0.8) / 2 = 0.9,
#        knn(y2) = (0 + 0.6) / 2 = 0.3
#   margin(x1, y1) = 1 / ((0.5 + 0.9) / 2) = 1.428571;  margin(x2, y1) = 0.8 / ((0.7 + 0.9) / 2) = 1.0
#   margin(x2, y2) = 0.6 / ((0.7 + 0.3) / 2) = 1.2  -> the hub y1 is penalised: x2 mines y2
SRC, TGT = unit([1, 0], [0.8, 0.6]), unit([1, 0], [0, 1])


def test_knn_means_by_hand():
    s, t = knn_means(SRC, TGT, k=1)
    assert s == pytest.approx([1.0, 0.8]) and t == pytest.approx([1.0, 0.6])
    s, t = knn_means(SRC, TGT, k=2)
    assert s == pytest.approx([0.5, 0.7]) and t == pytest.approx([0.9, 0.3])


def test_bucc_mine_by_hand():
    mined = bucc_mine(["x1", "x2"], SRC, ["y1", "y2"], TGT, k=1)
    assert [(s, t) for s, t, _ in mined] == [("x1", "y1"), ("x2", "y1")]
    assert [m for _, _, m in mined] == pytest.approx([1.0, 0.8 / 0.9], abs=1e-6)
    mined = bucc_mine(["x1", "x2"], SRC, ["y1", "y2"], TGT, k=2)
    assert [(s, t) for s, t, _ in mined] == [("x1", "y1"), ("x2", "y2")]
    assert [m for _, _, m in mined] == pytest.approx([1 / 0.7, 1.2], abs=1e-6)


def naive_mine(src: np.ndarray, tgt: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The margin straight from its definition, one pair at a time."""
    def knn(vec, others):
        sims = sorted((float(vec @ o) for o in others), reverse=True)[:k]
        return sum(sims) / (2 * k)

    out = []
    for i, x in enumerate(src):
        margins = [float(x @ y) / (knn(x, tgt) + knn(y, src)) for y in tgt]
        j = int(np.argmax(margins))
        out.append((i, j, margins[j]))
    return sorted(out, key=lambda c: -c[2])


def test_bucc_mine_k4_matches_naive_reference_across_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    src = unit(*rng.normal(size=(23, 6)))
    tgt = unit(*rng.normal(size=(31, 6)))
    expected = naive_mine(src, tgt, 4)
    for chunk in (1024, 5, 1):
        monkeypatch.setattr(retrieval, "CHUNK_ROWS", chunk)
        mined = bucc_mine([f"s{i}" for i in range(23)], src, [f"t{j}" for j in range(31)], tgt)
        assert [(s, t) for s, t, _ in mined] == [(f"s{i}", f"t{j}") for i, j, _ in expected]
        assert [m for *_, m in mined] == pytest.approx([m for *_, m in expected], abs=1e-5)


def test_bucc_mine_edge_cases():
    assert bucc_mine([], np.zeros((0, 2), np.float32), ["y"], unit([1, 0])) == []
    with pytest.raises(StepstoneError, match="differ in length"):
        bucc_mine(["a", "b"], unit([1, 0]), ["y"], unit([1, 0]))


# ----------------------------------------------------------------------------------------- BUCC F1
def test_bucc_f1_picks_the_best_threshold_by_hand():
    candidates = [("b", "B", 0.8), ("a", "A", 0.9), ("d", "D", 0.6), ("c", "C", 0.7)]  # any order
    gold = [("a", "A"), ("c", "C"), ("e", "E")]
    # keep 1: P 1, R 1/3, F1 0.5 | keep 2: P 1/2, R 1/3, F1 0.4 | keep 3: P 2/3, R 2/3, F1 2/3 (best)
    # keep 4: P 1/2, R 2/3, F1 4/7. Threshold: midway between the 3rd (0.7) and 4th (0.6) margins.
    assert bucc_f1(candidates, gold) == pytest.approx(
        {"f1": 200 / 3, "precision": 200 / 3, "recall": 200 / 3, "threshold": 0.65})


def test_bucc_f1_keeps_or_drops_equal_margins_together():
    # cutting between the two 0.7s would give P 1/2, R 1, F1 2/3, but no threshold separates them
    candidates = [("a", "A", 0.9), ("c", "C", 0.7), ("b", "B", 0.7)]
    assert bucc_f1(candidates, [("c", "C")]) == pytest.approx(
        {"f1": 50.0, "precision": 100 / 3, "recall": 100.0, "threshold": 0.7})


def test_bucc_f1_with_nothing_right():
    assert bucc_f1([("a", "B", 1.5), ("b", "A", 1.2)], [("a", "A")]) == {
        "f1": 0.0, "precision": 0.0, "recall": 0.0, "threshold": 1.5}
    with pytest.raises(StepstoneError, match="gold pair"):
        bucc_f1([("a", "A", 1.0)], [])


# ----------------------------------------------------------------------------------------- embed on tiny
SENTENCES = ["the cat is red .", "a dog", "the red dog is not a cat and the cat is not a dog .", "cat", "is it ?"]


@pytest.fixture()
def tiny():
    backbone = load_backbone(BackboneSpec())
    return backbone.model, backbone.tokenizer


def test_embed_shapes_and_unit_norm(tiny):
    model, tok = tiny
    e = embed(model, tok, SENTENCES, layer=1)
    assert e.shape == (5, 128) and e.dtype == np.float32
    assert np.linalg.norm(e, axis=1) == pytest.approx(np.ones(5), abs=1e-5)
    assert embed(model, tok, [], layer=1).shape == (0, 128)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_embed_is_mean_pooled_hidden_state_of_the_layer(tiny, layer):
    model, tok = tiny
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model.base_model(**enc, output_hidden_states=True).hidden_states[layer]
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(embed(model, tok, SENTENCES, layer=layer), expected, atol=1e-5)


def test_cls_pooling_takes_the_first_token(tiny):
    model, tok = tiny
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model.base_model(**enc, output_hidden_states=True).hidden_states[1]
    expected = torch.nn.functional.normalize(hidden[:, 0], dim=-1).numpy()
    np.testing.assert_allclose(embed(model, tok, SENTENCES, layer=1, pooling=retrieval.Pooling.CLS), expected,
                               atol=1e-5)
    with pytest.raises(StepstoneError, match=r"unknown pooling 'max' \(valid: mean, cls\)"):
        retrieval.RetrievalSettings(pooling="max")


def test_embed_order_and_batch_size_independent(tiny):
    model, tok = tiny
    e = embed(model, tok, SENTENCES, layer=1, batch_size=2)
    perm = [3, 0, 4, 2, 1]
    shuffled = embed(model, tok, [SENTENCES[i] for i in perm], layer=1, batch_size=3)
    np.testing.assert_allclose(shuffled, e[perm], atol=1e-5)
    np.testing.assert_allclose(embed(model, tok, SENTENCES, layer=1, batch_size=64), e, atol=1e-5)


def test_embed_padding_invariant(tiny):
    model, tok = tiny
    alone = embed(model, tok, ["a dog"], layer=2)
    padded = embed(model, tok, ["a dog", SENTENCES[2], SENTENCES[0]], layer=2, batch_size=8)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)


def test_embed_is_deterministic_in_training_mode_and_restores_it(tiny):
    model, tok = tiny
    e = embed(model, tok, SENTENCES, layer=2)
    model.train()
    np.testing.assert_allclose(embed(model, tok, SENTENCES, layer=2), e, atol=1e-6)  # no dropout
    assert model.training


def test_embed_layer_out_of_range(tiny):
    model, tok = tiny
    with pytest.raises(StepstoneError, match=r"0\.\.2"):
        embed(model, tok, SENTENCES, layer=3)
    with pytest.raises(StepstoneError, match=r"layers 0\.\.2"):
        evaluate_tatoeba(model, tok, [("a", "b")], RetrievalSettings(layer=-1))


def test_active_adapter_changes_the_embedding(tiny):
    model, tok = tiny
    plain = embed(model, tok, SENTENCES, layer=2)
    methods.add_adapter(model, "x", MethodSpec())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapters.x." in name:
                p.copy_(torch.randn_like(p, generator=torch.Generator().manual_seed(0)) * 0.5)
    np.testing.assert_allclose(embed(model, tok, SENTENCES, layer=2), plain, atol=1e-6)  # added, not active
    methods.activate(model, "x", head=None)
    adapted = embed(model, tok, SENTENCES, layer=2)
    assert np.abs(adapted - plain).max() > 1e-2
    methods.activate(model, None, head=None)
    np.testing.assert_allclose(embed(model, tok, SENTENCES, layer=2), plain, atol=1e-6)


def test_evaluate_tatoeba_and_bucc_on_tiny(tiny):
    model, tok = tiny
    pairs = [(s, s) for s in SENTENCES]
    assert evaluate_tatoeba(model, tok, pairs, RetrievalSettings()) == {"accuracy": 100.0, "layer": 1}
    data = BuccData({f"s{i}": s for i, s in enumerate(SENTENCES)},
                    {f"t{i}": s for i, s in enumerate(reversed(SENTENCES))},
                    [("s0", "t4"), ("s2", "t2")])
    scores = evaluate_bucc(model, tok, data, RetrievalSettings(layer=2, batch_size=2))
    assert set(scores) == {"f1", "precision", "recall", "threshold", "layer"}
    assert scores["layer"] == 2 and scores["recall"] == 100.0  # identical sentences are found
