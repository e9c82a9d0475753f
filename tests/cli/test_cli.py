"""The Typer CLI end to end on the tiny backbone: train, compose, evaluate, zoo, config + overrides."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from stepstone.tasks import TASKS
from stepstone_cli.main import app

FAST = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16"]


def run(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_command_has_help():
    for command in ([], ["train"], ["evaluate"], ["zoo"], ["zoo", "list"], ["zoo", "show"], ["zoo", "rm"],
                    ["tasks"], ["demo"], ["summary"], ["export"], ["import"], ["grid"], ["report"]):
        result = run(*command, "--help")
        assert result.exit_code == 0, command
        assert "Usage" in result.stdout


def test_tasks_lists_every_format():
    result = run("tasks")
    assert result.exit_code == 0
    for name, fmt in (("toy-sentiment", "classification"), ("toy-tags", "tagging"), ("toy-qa", "qa"),
                      ("toy-choice", "multiple_choice")):
        assert name in result.stdout and fmt in result.stdout


def test_train_compose_evaluate_and_zoo(workdir):
    zoo = workdir / "zoo"
    first = run("train", "--task", "toy-sentiment", "--zoo", zoo, "-q", *FAST)
    assert first.exit_code == 0, first.output
    assert "saved adapter: " in first.stdout and (zoo / "toy-sentiment-bottleneck" / "manifest.json").is_file()

    stacked = run("train", "--task", "toy-tags", "--on", "Stack(toy-sentiment-bottleneck)", "--zoo", zoo,
                  "--name", "tags-on-sent", "-q", *FAST)
    assert stacked.exit_code == 0, stacked.output
    assert "setup: Stack(toy-sentiment-bottleneck, tags-on-sent)" in stacked.stdout
    run_dir = workdir / "runs" / "tags-on-sent"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "manifest.json", "members", "target", "train_log.jsonl"]

    evaluated = run("evaluate", run_dir, "--langs", "en,xb", "--max-examples", "8", "-q")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads((run_dir / "evaluations" / "toy-tags.test.json").read_text())
    assert sorted(scores["scores"]) == ["en", "xb"] and scores["examples"] == {"en": 8, "xb": 8}
    assert sorted(scores["scores"]["en"]) == ["f1", "precision", "recall"]
    assert "average" in evaluated.stdout

    listed = run("zoo", "list", "--zoo", zoo)
    assert listed.exit_code == 0 and "toy-sentiment-bottleneck" in listed.stdout
    shown = run("zoo", "show", "toy-sentiment-bottleneck", "--zoo", zoo)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["task"]["name"] == "toy-sentiment"
    removed = run("zoo", "rm", "toy-sentiment-bottleneck", "--zoo", zoo, "--yes")
    assert removed.exit_code == 0 and not (zoo / "toy-sentiment-bottleneck").exists()
    # the run keeps its own copy of the member, so it still evaluates
    assert run("evaluate", run_dir, "--langs", "en", "--max-examples", "4", "-q").exit_code == 0


def test_config_file_overrides_and_saved_config(workdir):
    config = workdir / "spec.yaml"
    config.write_text("task: toy-pair\nname: pair-lora\nmethod:\n  kind: lora\n  lora:\n    r: 4\ntrain:\n  lr: 3e-3\n")
    result = run("train", "--config", config, "--zoo", workdir / "zoo", "-q", "method.lora.r=2", *FAST)
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((workdir / "zoo" / "pair-lora" / "config.yaml").read_text())
    assert saved["method"]["kind"] == "lora" and saved["method"]["lora"]["r"] == 2
    assert saved["train"]["lr"] == 3e-3 and saved["train"]["epochs"] == 1
    # the saved config re-runs as is (under another name)
    again = run("train", "--config", workdir / "zoo" / "pair-lora" / "config.yaml", "--name", "pair-lora-2",
                "--zoo", workdir / "zoo", "-q")
    assert again.exit_code == 0, again.output
    m1, m2 = (json.loads((workdir / "zoo" / n / "manifest.json").read_text()) for n in ("pair-lora", "pair-lora-2"))
    assert m1["metrics"] == m2["metrics"] and m1["history"] == m2["history"]


def test_same_command_twice_gives_same_metrics(workdir):
    outs = []
    for name in ("a", "b"):
        result = run("train", "--task", "toy-qa", "--name", name, "--zoo", workdir / "zoo", "-q", *FAST)
        assert result.exit_code == 0, result.output
        outs.append(json.loads((workdir / "zoo" / name / "manifest.json").read_text()))
    assert outs[0]["metrics"] == outs[1]["metrics"] and outs[0]["history"] == outs[1]["history"]


BAD_INPUT = [
    (["train", "--task", "nope"], f"unknown task 'nope' (valid: {', '.join(TASKS)})"),
    (["train", "--task", "toy-tags", "--method", "lorra"], "'method.kind' must be one of: bottleneck, full, houlsby, ia3, lora"),
    (["train", "--task", "toy-tags", "train.lrr=1"], "unknown key 'train.lrr'"),
    (["train", "--task", "toy-tags", "train.epochs=zero"], "'train.epochs' must be an int"),
    (["train", "--task", "toy-tags", "oops"], "bad override 'oops'"),
    (["train", "--config", "missing.yaml"], "config file not found: missing.yaml"),
    (["train", "--task", "toy-tags", "--backbone", "./no-such-dir"], "is not a model directory"),
    (["train", "--task", "toy-tags", "--on", "Stack(ghost)"], "no zoo entry 'ghost'"),
    (["train", "--task", "toy-tags", "--on", "Fuse(a)"], "Fuse needs at least two members"),
    (["train", "--task", "toy-tags", "--on", "Mix(a, b)"], "bad composition 'Mix(a, b)'"),
    (["train", "--task", "toy-tags", "--name", "../escape"], "invalid run name '../escape'"),
    (["train", "--task", "toy-tags", "--full-finetune", "--on", "Stack(a)"], "a full fine-tune has no adapters"),
    (["train", "--task", "toy-tags", "train.max_train_examples=0"], "no examples for task 'toy-tags'"),
    (["train", "--task", "toy-tags", "--log", "comet"], "unknown --log 'comet' (valid: tensorboard, wandb, mlflow"),
    (["train", "--task", "toy-tags", "--quantize", "3bit"], "'backbone.quantize' must be one of: 4bit, 8bit, none"),
    (["train", "--task", "toy-tags", "--precision", "fp8"], "'train.precision' must be one of: bf16, fp16, fp32"),
    (["train", "--task", "toy-tags", "--full-finetune", "--quantize", "4bit"], "cannot be 4bit-quantised"),
    (["evaluate", "ghost"], "no zoo entry 'ghost'"),
    (["zoo", "show", "ghost"], "no zoo entry 'ghost'"),
    (["zoo", "rm", "../x", "--yes"], "invalid zoo entry name '../x'"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_nothing_written(workdir, args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_bad_config_file_names_file_and_line(workdir):
    config = workdir / "bad.yaml"
    config.write_text("task: toy-tags\ntrain:\n  epochs: 2\n  lrr: 0.1\n")
    result = run("train", "--config", config)
    assert result.exit_code == 2
    assert f"{config}:4: unknown key 'train.lrr'" in result.stderr and "did you mean 'lr'?" in result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["bad.yaml"]


def test_zoo_specs_in_the_checkout_resolve():
    from stepstone.pipelines import load_run_spec

    specs = sorted((Path(__file__).resolve().parents[2] / "adapters_zoo").glob("*.yaml"))
    assert [p.name for p in specs] == ["toy-pair-lora.yaml", "toy-sentiment-bn.yaml"]
    for path in specs:
        assert load_run_spec(path).run_name == path.stem


@pytest.mark.slow
def test_demo_end_to_end(workdir):
    result = run("demo", "--out", workdir / "demo", "-q")
    assert result.exit_code == 0, result.output
    results = json.loads((workdir / "demo" / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == ["target-only", "stack", "fuse", "full-finetune"]
    assert all(sorted(r["test"]) == ["en", "xa", "xb"] for r in results["runs"])
    assert (workdir / "demo" / "results.md").read_text().count("\n| ") == 5
    for row in results["runs"]:
        assert row["test"]["en"] > row["test"]["xb"]  # zero-shot to the least similar language costs
    assert "zero-shot mean" in result.stdout
