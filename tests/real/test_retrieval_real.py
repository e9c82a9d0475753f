"""Zero-shot retrieval with multilingual-e5-small (12 layers, default layer 7): Tatoeba and BUCC 2018 zh-en.

Tatoeba uses all 1,000 pairs of each of the 7 language files. Embedding the full BUCC zh-en dev set
(8,624 zh + 13,589 en sentences) takes about 4 minutes on one thread, so the BUCC test mines a fixed
subsample instead: every gold sentence plus a seeded sample of the others, 2,000 zh and 4,000 en in all.
Fewer distractors make it easier than the full set (see the numbers in the asserts' comments).
"""
from __future__ import annotations

import random

import pytest

from stepstone.backbone import load_backbone
from stepstone.data.readers import BuccData, read_bucc, read_tatoeba
from stepstone.retrieval import RetrievalSettings, evaluate_bucc, evaluate_tatoeba
from stepstone.specs import BackboneSpec

pytestmark = pytest.mark.real

LANGS = ("ara", "cmn", "deu", "fra", "hin", "rus", "spa")
HIGH = {"deu", "fra", "spa", "rus"}  # chance is 0.1% (1 in 1,000)


@pytest.fixture(scope="module")
def e5(e5_backbone):
    backbone = load_backbone(BackboneSpec(str(e5_backbone)))
    return backbone.model, backbone.tokenizer


def test_tatoeba_all_languages_far_above_chance(e5, shared_data):
    model, tok = e5
    folder = shared_data / "target" / "tatoeba"
    scores = {}
    for lang in LANGS:
        pairs = read_tatoeba(folder / f"tatoeba.{lang}-eng.{lang}", folder / f"tatoeba.{lang}-eng.eng")
        assert len(pairs) == 1000
        result = evaluate_tatoeba(model, tok, pairs, RetrievalSettings(batch_size=32))
        assert result["layer"] == 7
        scores[lang] = result["accuracy"]
    print("tatoeba accuracy", scores)
    for lang, accuracy in scores.items():
        assert accuracy > (50 if lang in HIGH else 20), (lang, scores)


def subsample(data: BuccData, n_source: int, n_target: int, seed: int = 2018) -> BuccData:
    """All gold sentences plus a seeded sample of the rest, up to n_source / n_target per side."""
    def side(sentences: dict[str, str], keep: set[str], n: int) -> dict[str, str]:
        rest = sorted(set(sentences) - keep)
        chosen = keep | set(random.Random(seed).sample(rest, max(0, n - len(keep))))
        return {key: s for key, s in sentences.items() if key in chosen}

    return BuccData(side(data.source, {s for s, _ in data.gold}, n_source),
                    side(data.target, {t for _, t in data.gold}, n_target), data.gold)


def test_bucc_zh_en_far_above_chance(e5, shared_data):
    model, tok = e5
    folder = shared_data / "target" / "bucc2018"
    data = read_bucc(folder / "zh-en.dev.zh", folder / "zh-en.dev.en", folder / "zh-en.dev.gold")
    assert (len(data.source), len(data.target), len(data.gold)) == (8624, 13589, 257)
    small = subsample(data, 2000, 4000)
    assert (len(small.source), len(small.target)) == (2000, 4000)
    result = evaluate_bucc(model, tok, small, RetrievalSettings(batch_size=32))
    print("bucc zh-en (subsample)", result)
    assert result["layer"] == 7
    assert result["f1"] > 30, result
