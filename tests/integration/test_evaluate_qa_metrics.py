"""QA reports exact match beside F1 (issue 16): `stepstone evaluate` writes both keys for every language and prints
both columns, for every QA task (SQuAD, XQuAD, MLQA, TyDiQA-GoldP), each normalised by its official script. Tiny
backbone, one SQuAD-trained run on hand-made local files; its QA head serves the three targets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stepstone_cli.main import app

CONTEXT = "Anna lives in Paris. Ben lives in Rome."
QUESTIONS = [("Where does Anna live?", "Paris"), ("Where does Ben live?", "Rome"), ("Who lives in Rome?", "Ben")]


def squad_file(lang: str) -> str:
    qas = [{"id": f"{lang}-{i}", "question": q, "answers": [{"text": a, "answer_start": CONTEXT.index(a)}]}
           for i, (q, a) in enumerate(QUESTIONS)]
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]})


FILES = {  # task -> (split, language, the file it reads there)
    "squad": ("validation", "en", "intermediate/squad/dev.json"),
    "xquad": ("test", "de", "target/xquad/xquad.de.json"),
    "mlqa": ("test", "zh", "target/mlqa/test/test-context-zh-question-zh.json"),
    "tydiqa": ("test", "fi", "labels/tydiqa/test-fi.json"),
}


def cli(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


@pytest.fixture
def trained(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    for relative in ["intermediate/squad/train.json"] + [f for _, _, f in FILES.values()]:
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        (data / relative).write_text(squad_file("en"), encoding="utf-8")
    done = cli("train", "--task", "squad", "--data-dir", "data", "--zoo", "zoo", "-q", "train.epochs=1",
               "train.batch_size=3", "train.max_length=32", "train.doc_stride=8")
    assert done.exit_code == 0, done.output
    return tmp_path


def test_every_qa_task_reports_exact_match_beside_f1(trained):
    for task, (split, lang, _) in FILES.items():
        done = cli("evaluate", "squad-bottleneck", "--zoo", "zoo", "--task", task, "--split", split, "--langs", lang,
                   "--data-dir", "data", "--output", f"{task}.json", "-q")
        assert done.exit_code == 0, done.output
        report = json.loads((trained / f"{task}.json").read_text())
        assert (report["task"], report["metric"], list(report["scores"])) == (task, "f1", [lang])
        assert set(report["scores"][lang]) == {"exact_match", "f1"}
        assert 0.0 <= report["scores"][lang]["exact_match"] <= report["scores"][lang]["f1"] <= 100.0
        header = next(line for line in done.stdout.splitlines() if "language" in line)
        assert header.split() == ["┃", "language", "┃", "exact_match", "┃", "f1", "┃"]
        row = next(line for line in done.stdout.splitlines() if line.split()[1:2] == [lang])
        assert row.split()[3] == f"{report['scores'][lang]['exact_match']:.2f}"
