"""`stepstone train --init-from NAME` (issue 16): a zoo entry name continues that adapter with its method, a new
head and the chain recorded; `zoo list` shows the chain, `zoo show` prints it in the manifest."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from stepstone_cli.main import app

FAST = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16"]


def run(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


def test_train_init_from_a_zoo_name_records_and_lists_the_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run("train", "--task", "toy-sentiment", "--method", "lora", "--name", "sent", "--zoo", "zoo", "-q", *FAST)
    assert first.exit_code == 0, first.output
    # no --method: the source's (lora); the default name follows it
    chained = run("train", "--task", "toy-pair", "--init-from", "sent", "--zoo", "zoo", "-q", *FAST)
    assert chained.exit_code == 0, chained.output
    assert "saved adapter: zoo/toy-pair-lora" in chained.stdout
    manifest = json.loads((tmp_path / "zoo" / "toy-pair-lora" / "manifest.json").read_text())
    assert manifest["chain"] == ["toy-sentiment", "toy-pair"]
    assert manifest["init_from"] == {"path": "zoo/sent", "name": "sent"}
    assert manifest["spec"]["init_from"] == "sent" and manifest["method"]["kind"] == "lora"
    third = run("train", "--task", "toy-tags", "--init-from", "zoo/toy-pair-lora", "--name", "tags", "--zoo", "zoo",
                "-q", *FAST)
    assert third.exit_code == 0, third.output
    listed = run("zoo", "list", "--zoo", "zoo")
    assert listed.exit_code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in listed.stdout.splitlines()
            if line.count("│") > 3 and "name" not in line}
    assert rows == {"sent": "toy-sentiment", "tags": "toy-sentiment -> toy-pair -> toy-tags",
                    "toy-pair-lora": "toy-sentiment -> toy-pair"}
    shown = run("zoo", "show", "tags", "--zoo", "zoo")
    assert json.loads(shown.stdout)["chain"] == ["toy-sentiment", "toy-pair", "toy-tags"]
    evaluated = run("evaluate", "tags", "--zoo", "zoo", "--langs", "en", "--max-examples", "4", "-q")
    assert evaluated.exit_code == 0, evaluated.output
