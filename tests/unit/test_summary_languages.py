"""`summary --by tier|family|script` and QA exact match beside F1, on hand-written reports, hand-computed."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stepstone.errors import StepstoneError
from stepstone.experiments import summarize
from stepstone_cli.main import app


def report(path, task, metric, scores):
    """scores: language -> number (the main metric) or -> {metric: number, ...} (QA: f1 and exact_match)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "metric": metric, "split": "test", "scores": {
        lang: v if isinstance(v, dict) else {metric: v} for lang, v in scores.items()}}))
    return path


@pytest.fixture
def reports(tmp_path):
    return [report(tmp_path / "xnli.json", "xnli", "accuracy",
                   {"en": 80.0, "de": 70.0, "hi": 60.0, "th": 55.0, "sw": 50.0}),
            report(tmp_path / "panx.json", "panx", "f1", {"en": 90.0, "zh": 60.0, "yo": 30.0}),
            # MLQA's cross-language pair de.en is no row of the table: unknown
            report(tmp_path / "mlqa.json", "mlqa", "f1", {"en": {"f1": 70.0, "exact_match": 50.0},
                                                          "de.en": {"f1": 60.0, "exact_match": 40.0}})]


HIGH = ((80 + 70 + 60) / 3 + (90 + 60) / 2 + 70) / 3  # xnli en de hi, panx en zh, mlqa en


def test_by_tier_per_task_and_over_tasks(reports):
    result = summarize(reports, by="tier")
    by_task = {t.task: {g: (s.mean, s.languages) for g, s in t.groups.items()} for t in result.tasks}
    assert by_task == {
        "xnli": {"high": (70.0, ("en", "de", "hi")), "medium": (55.0, ("th",)), "low": (50.0, ("sw",))},
        "panx": {"high": (75.0, ("en", "zh")), "low": (30.0, ("yo",))},
        "mlqa": {"high": (70.0, ("en",)), "unknown": (60.0, ("de.en",))}}
    assert list(result.group_means.items()) == [("high", pytest.approx(HIGH)), ("medium", 55.0),
                                                ("low", (50 + 30) / 2), ("unknown", 60.0)]
    assert result.by == "tier" and result.overall == pytest.approx((63.0 + 60.0 + 65.0) / 3)  # as without --by


def test_by_family_and_script(reports):
    family = summarize(reports, by="family")
    assert family.group_means == {"Indo-European": pytest.approx(((80 + 70 + 60) / 3 + 90 + 70) / 3),
                                  "Niger-Congo": (50 + 30) / 2, "Sino-Tibetan": 60.0, "Tai-Kadai": 55.0,
                                  "unknown": 60.0}
    script = summarize(reports, by="script")
    assert list(script.group_means) == ["Devanagari", "Han", "Latin", "Thai", "unknown"]
    assert script.group_means["Latin"] == pytest.approx(((80 + 70 + 50) / 3 + (90 + 30) / 2 + 70) / 3)


def test_qa_exact_match_beside_f1_other_reports_unchanged(reports):
    result = summarize(reports)
    assert {t.task: (t.average, t.exact_match) for t in result.tasks} == {
        "xnli": (63.0, None), "panx": (60.0, None), "mlqa": (65.0, 45.0)}
    tasks = {t["task"]: t for t in result.to_dict()["tasks"]}
    assert set(tasks["xnli"]) == {"task", "category", "metric", "languages", "average", "zero_shot", "source"}
    assert tasks["mlqa"]["exact_match"] == 45.0
    assert set(result.to_dict()) == {"tasks", "categories", "overall"}  # without --by: the keys it always had


def test_exact_match_only_when_every_language_has_it(tmp_path):
    partial = report(tmp_path / "xquad.json", "xquad", "f1", {"en": {"f1": 80.0, "exact_match": 70.0},
                                                              "de": {"f1": 60.0}})
    (task,) = summarize([partial]).tasks
    assert (task.average, task.exact_match) == (70.0, None)


def test_unknown_grouping_is_refused_before_reading(tmp_path):
    with pytest.raises(StepstoneError) as err:
        summarize([tmp_path / "missing.json"], by="region")
    assert str(err.value) == "unknown language grouping 'region' (valid: tier, family, script)"


def test_cli_by_tier_prints_and_writes_groups(reports, tmp_path):
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["summary", *map(str, reports), "--by", "tier",
                                                         "--output", str(tmp_path / "s.json")])
    assert out.exit_code == 0, out.output
    assert "by tier: mean (languages)" in out.stdout
    xnli = next(line for line in out.stdout.splitlines() if "xnli" in line and "(3)" in line)
    assert [c for c in xnli.replace("│", " ").split() if "." in c] == ["70.00", "55.00", "50.00"]
    assert f"{HIGH:.2f}" in out.stdout and "exact match" in out.stdout and "45.00" in out.stdout
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["by"] == "tier" and written["group_means"] == {"high": pytest.approx(HIGH), "medium": 55.0,
                                                                  "low": 40.0, "unknown": 60.0}
    mlqa = next(t for t in written["tasks"] if t["task"] == "mlqa")
    assert mlqa["groups"] == {"high": {"mean": 70.0, "languages": ["en"]},
                              "unknown": {"mean": 60.0, "languages": ["de.en"]}}


def test_cli_without_by_or_qa_prints_the_old_table(tmp_path):
    xnli = report(tmp_path / "xnli.json", "xnli", "accuracy", {"en": 80.0, "de": 70.0})
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["summary", str(xnli)])
    assert out.exit_code == 0, out.output
    header = next(line for line in out.stdout.splitlines() if "category" in line)
    assert header.replace("┃", " ").split() == ["category", "task", "metric", "languages", "average", "zero-shot",
                                                "(no", "en)"]
    assert "by " not in out.stdout
