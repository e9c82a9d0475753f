"""The languages table against ../shared/data, and `summary --by` over a real multilingual-e5-small evaluation
(bare backbone, Tatoeba, the first 200 pairs of each of the 7 language files: ~1 minute on one thread)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stepstone.experiments import summarize
from stepstone.languages import group_of, language
from stepstone.tasks import TASKS, Split, get_task
from stepstone_cli.main import app

pytestmark = pytest.mark.real


def test_every_language_with_shared_data_has_a_row(shared_data):
    found = {}
    for name, _ in TASKS.items():
        source = get_task(name).source
        has_local = getattr(source, "has_local", None)  # hub-only unions and toy tasks have no files
        for lang in get_task(name).languages if has_local else ():
            if any(has_local(split, lang, shared_data) for split in Split):
                found.setdefault(lang, set()).add(name)
    assert sorted(found) == ["ar", "bn", "de", "en", "es", "fi", "fr", "hi", "id", "ko", "ru", "sw", "te", "zh"]
    assert [code for code in found if language(code) is None] == []
    # TyDiQA-GoldP's dev languages span every tier
    assert {c: group_of(c, "tier") for c in sorted(found) if "tydiqa" in found[c]} == {
        "ar": "high", "bn": "medium", "en": "high", "fi": "high", "id": "medium", "ko": "high", "ru": "high",
        "sw": "low", "te": "low"}


def test_summary_by_script_and_tier_over_an_e5_tatoeba_evaluation(e5_backbone, shared_data, tmp_path):
    from stepstone.pipelines.evaluation import evaluate

    path = tmp_path / "tatoeba.test.json"
    evaluate(None, task="tatoeba", backbone=str(e5_backbone), data_dir=shared_data, max_examples=200, output=path)
    scores = {lang: s["accuracy"] for lang, s in json.loads(path.read_text())["scores"].items()}
    assert sorted(scores) == ["ar", "de", "es", "fr", "hi", "ru", "zh"]
    print("tatoeba accuracy (200 pairs)", scores)

    script = summarize([path], by="script")
    (task,) = script.tasks
    assert {g: s.languages for g, s in task.groups.items()} == {
        "Arabic": ("ar",), "Cyrillic": ("ru",), "Devanagari": ("hi",), "Han": ("zh",), "Latin": ("de", "es", "fr")}
    assert task.groups["Latin"].mean == pytest.approx((scores["de"] + scores["es"] + scores["fr"]) / 3)
    assert script.group_means == {g: s.mean for g, s in task.groups.items()}  # one task: its own group means

    tier = summarize([path], by="tier")
    assert list(tier.group_means) == ["high"]  # Joshi class 4-5 for all seven
    assert tier.group_means["high"] == pytest.approx(sum(scores.values()) / 7) == pytest.approx(tier.overall)

    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["summary", str(path), "--by", "family"])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.stdout.splitlines() if line.startswith("│ tatoeba") and "(5)" in line)
    indo_european = (scores["de"] + scores["es"] + scores["fr"] + scores["hi"] + scores["ru"]) / 5
    assert f"{indo_european:.2f} (5)" in row and f"{scores['zh']:.2f} (1)" in row
