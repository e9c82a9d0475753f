"""XTREME-style summary over evaluation reports, hand-computed."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stepstone.errors import StepstoneError
from stepstone.experiments import summarize
from stepstone_cli.main import app


def report(path, task, metric, scores):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "metric": metric, "split": "test",
                                "scores": {lang: {metric: v} for lang, v in scores.items()}}))
    return path


def test_summary_averages_languages_then_tasks(tmp_path):
    run = tmp_path / "run"
    report(run / "evaluations" / "xnli.test.json", "xnli", "accuracy", {"en": 80.0, "de": 70.0, "zh": 60.0})
    report(run / "evaluations" / "panx.test.json", "panx", "f1", {"en": 90.0, "hi": 50.0})
    tatoeba = report(tmp_path / "tatoeba.json", "tatoeba", "accuracy", {"de": 95.0, "ar": 65.0})
    result = summarize([run, tatoeba])
    assert [(t.task, t.category, t.average, t.zero_shot) for t in result.tasks] == [
        ("xnli", "classification", 70.0, 65.0), ("tatoeba", "retrieval", 80.0, 80.0),
        ("panx", "structured prediction", 70.0, 50.0)]
    assert result.categories == {"classification": 70.0, "retrieval": 80.0, "structured prediction": 70.0}
    assert result.overall == pytest.approx((70.0 + 80.0 + 70.0) / 3)
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["summary", str(run), str(tatoeba), "--output",
                                                         str(tmp_path / "s.json")])
    assert out.exit_code == 0 and "73.33" in out.stdout
    assert json.loads((tmp_path / "s.json").read_text())["overall"] == pytest.approx(220 / 3)


def test_summary_refuses_duplicates_and_non_reports(tmp_path):
    a = report(tmp_path / "a.json", "xnli", "accuracy", {"en": 1.0})
    b = report(tmp_path / "b.json", "xnli", "accuracy", {"en": 2.0})
    with pytest.raises(StepstoneError, match="task 'xnli' is reported twice"):
        summarize([a, b])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(StepstoneError, match="not a stepstone evaluation report"):
        summarize([bad])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StepstoneError, match="no evaluation reports found"):
        summarize([tmp_path / "empty"])
