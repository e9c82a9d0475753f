"""`stepstone train --method lora --on "Fuse(a, b)"` over LoRA zoo adapters, then `stepstone evaluate` (issue 14)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from stepstone_cli.main import app

FAST = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16"]


def run(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


def test_train_fuse_over_lora_members_and_evaluate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for task in ("toy-sentiment", "toy-pair"):
        result = run("train", "--task", task, "--method", "lora", "--zoo", "zoo", "-q", *FAST)
        assert result.exit_code == 0, result.output
    fused = run("train", "--task", "toy-sentiment", "--method", "lora", "--zoo", "zoo", "--name", "fused",
                "--on", "Fuse(toy-sentiment-lora, toy-pair-lora)", "-q", *FAST)
    assert fused.exit_code == 0, fused.output
    assert "setup: Fuse(toy-sentiment-lora, toy-pair-lora) + fused" in fused.stdout
    folder = tmp_path / "runs" / "fused"
    assert sorted(p.name for p in (folder / "lora_fusion").iterdir()) == ["lora_fusion.safetensors",
                                                                        "lora_fusion_config.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["mode"], manifest["composition"]["semantics"]) == ("lora-fusion", "lora-fusion")
    # evaluated on the dev examples, the reloaded run scores exactly what training measured on them
    evaluated = run("evaluate", folder, "--split", "validation", "--langs", "en", "--max-examples", "16", "-q")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((folder / "evaluations" / "toy-sentiment.validation.json").read_text())
    assert report["scores"]["en"] == manifest["metrics"]["dev"]
