"""`stepstone export` / `stepstone import` end to end on the tiny backbone, through the Typer app."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from stepstone_cli.main import app

FAST = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16"]


def run(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_export_and_import_have_help():
    for command in (["export"], ["import"]):
        result = run(*command, "--help")
        assert result.exit_code == 0, command
        assert "Usage" in result.stdout and "--format" in result.stdout


def test_export_import_and_compose_on_the_import(workdir):
    zoo = workdir / "zoo"
    trained = run("train", "--task", "toy-sentiment", "--method", "lora", "--name", "sent-lora", "--zoo", zoo, "-q",
                  *FAST)
    assert trained.exit_code == 0, trained.output

    exported = run("export", "sent-lora", "--format", "peft", "--out", workdir / "peft", "--zoo", zoo)
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.splitlines() == [
        "LoRA r=8 alpha=16, 8 tensors: attention.self.query, attention.self.value",
        "heads (not loaded by PEFT): toy-sentiment",
        f"exported sent-lora: {workdir / 'peft'}"]
    assert {"adapter_config.json", "adapter_model.safetensors", "stepstone_manifest.json"} <= {
        p.name for p in (workdir / "peft").iterdir()}

    imported = run("import", workdir / "peft", "--format", "peft", "--name", "sent-again", "--zoo", zoo)
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.splitlines() == [
        "LoRA r=8 alpha=16, 8 tensors: attention.self.query, attention.self.value",
        "heads: sent-again", f"saved adapter: {zoo / 'sent-again'}"]
    original, again = (json.loads((zoo / n / "manifest.json").read_text()) for n in ("sent-lora", "sent-again"))
    assert again["method"] == original["method"] and again["task"]["head"] == "sent-again"

    # the imported entry is a composition member like any LoRA entry, and evaluates like the original
    stacked = run("train", "--task", "toy-tags", "--on", "Stack(sent-again)", "--name", "tags-on-import",
                  "--zoo", zoo, "-q", *FAST)
    assert stacked.exit_code == 0, stacked.output
    assert "setup: Stack(sent-again, tags-on-import)" in stacked.stdout
    run_manifest = json.loads((workdir / "runs" / "tags-on-import" / "manifest.json").read_text())
    assert run_manifest["composition"]["member_methods"] == {"sent-again": original["method"]}
    scores = []
    for name in ("sent-lora", "sent-again"):
        result = run("evaluate", name, "--zoo", zoo, "--langs", "en,xb", "--max-examples", "8", "-q",
                     "--output", workdir / f"{name}.json")
        assert result.exit_code == 0, result.output
        scores.append(json.loads((workdir / f"{name}.json").read_text())["scores"])
    assert scores[0] == scores[1]


def test_import_a_peft_folder_without_head_and_list_it(workdir):
    from peft import LoraConfig, get_peft_model
    from transformers import XLMRobertaModel

    from stepstone.backbone import load_backbone
    from stepstone.specs import BackboneSpec

    torch.manual_seed(0)
    base = XLMRobertaModel(load_backbone(BackboneSpec("tiny")).model.config)
    get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"])).save_pretrained(
        str(workdir / "peft"))
    zoo = workdir / "zoo"
    imported = run("import", workdir / "peft", "--name", "plain", "--backbone", "tiny", "--zoo", zoo)
    assert imported.exit_code == 0, imported.output
    assert 'heads: none (compose it: --on "Stack(plain)")' in imported.stdout
    listed = run("zoo", "list", "--zoo", zoo)
    assert listed.exit_code == 0, listed.output
    assert "plain" in listed.stdout and "lora" in listed.stdout and "2,048" in listed.stdout
    # no head: it loads for retrieval (embeddings with the LoRA active), and says so when asked for a task
    from stepstone.pipelines import load_for_inference

    loaded, manifest, task = load_for_inference(zoo / "plain")
    assert task is None and manifest["tasks"] == [] and not loaded.model.heads
    assert loaded.model.active_adapters is not None and "plain" in str(loaded.model.active_adapters)
    evaluated = run("evaluate", "plain", "--zoo", zoo)
    assert evaluated.exit_code == 2
    assert evaluated.output.strip() == ("error: 'plain' has no task head (an imported adapter): evaluate it on a "
                                        "retrieval task (--task bucc or tatoeba), or train a head on it: --on "
                                        '"Stack(plain)"')


def _bin_only(workdir: Path) -> Path:
    folder = workdir / "bin-only"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    (folder / "adapter_model.bin").write_bytes(b"not read")
    return folder


BAD = [
    (["export", "ghost", "--out", "x"], "no zoo entry 'ghost'"),
    (["export", "ghost", "--format", "onnx", "--out", "x"], "unknown format 'onnx' (valid: peft)"),
    (["import", "nowhere", "--name", "x"], "'nowhere' is not a folder (expected a PEFT adapter folder"),
    (["import", "bin-only", "--name", "x"], "holds only adapter_model.bin, a pickle, which stepstone never loads"),
    (["import", "bin-only", "--name", "../x"], "invalid zoo entry name '../x'"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(workdir, args, message):
    _bin_only(workdir)
    result = run(*args, "--zoo", workdir / "zoo")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in workdir.iterdir()) == ["bin-only"]


def test_export_of_a_bottleneck_entry_is_refused(workdir):
    zoo = workdir / "zoo"
    assert run("train", "--task", "toy-sentiment", "--name", "bn", "--zoo", zoo, "-q", *FAST).exit_code == 0
    result = run("export", "bn", "--out", workdir / "out", "--zoo", zoo)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: cannot export 'bn' to PEFT: it is a bottleneck adapter and PEFT has no "
                                     "bottleneck adapters; only LoRA entries export")
    assert not (workdir / "out").exists()
