"""What a user expects around the core commands (issue 13): --on trains on the members' backbone, a global -q,
shell completion, `tasks --json`, the zero-shot headline of `evaluate`, `zoo show` of runs, and manifests that
say where the backbone and the data came from (tiny backbone, offline)."""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from stepstone import pipelines
from stepstone.pipelines import inference
from stepstone.pipelines import train as train_steps
from stepstone.backbone import load_backbone
from stepstone.errors import StepstoneError
from stepstone.specs import BackboneSpec
from stepstone.tasks import TASKS, TaskSpec
from stepstone_cli.main import app

FAST = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16"]
BACKBONE_FILES = ["config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
                  "tokenizer_config.json"]


def run(*args, **kwargs):
    return CliRunner(env={"COLUMNS": "300"}).invoke(app, [str(a) for a in args], **kwargs)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digest(folder: Path) -> str:
    """The folder digest as README defines it: sha256 over "NAME\\0SHA256\\n" of its model files, by name."""
    return hashlib.sha256("".join(f"{n}\0{sha(folder / n)}\n" for n in BACKBONE_FILES).encode()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A local backbone folder (tiny's weights with the embedding LayerNorm scaled, so it has a fingerprint of
    its own) and a toy-sentiment adapter `sent` trained on it."""
    root = tmp_path_factory.mktemp("usability")
    folder = root / "backbones" / "small-xlmr"
    backbone = load_backbone(BackboneSpec("tiny"))
    with torch.no_grad():
        backbone.model.base_model.embeddings.LayerNorm.weight.mul_(1.5)
    backbone.model.save_pretrained(folder)
    backbone.tokenizer.save_pretrained(folder)
    zoo = root / "zoo"
    done = run("train", "--task", "toy-sentiment", "--backbone", folder, "--name", "sent", "--zoo", zoo, "-q", *FAST)
    assert done.exit_code == 0, done.output
    return {"root": root, "folder": folder, "zoo": zoo, "member": json.loads((zoo / "sent" / "manifest.json").read_text())}


# ----------------------------------------------------------------------------- backbone provenance + --on
def test_manifest_records_the_backbone_folder_by_content(world):
    folder = world["folder"]
    record = world["member"]["backbone"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(BACKBONE_FILES + ["generation_config.json"])
    assert record["name"] == str(folder)
    assert record["source"] == {"local": str(folder.resolve()), "sha256": digest(folder),
                                "files": {name: sha(folder / name) for name in BACKBONE_FILES}}
    assert record["fingerprint"] != load_backbone(BackboneSpec("tiny")).fingerprint


def test_on_without_backbone_trains_on_the_members_backbone(world, tmp_path):
    done = run("train", "--task", "toy-tags", "--on", "Stack(sent)", "--zoo", world["zoo"], "--runs-dir", tmp_path,
               "--name", "tags", "-q", *FAST)
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "tags" / "manifest.json").read_text())["backbone"]
    member = world["member"]["backbone"]
    assert record["name"] == str(world["folder"].resolve())  # the absolute folder, whatever the working directory
    assert (record["fingerprint"], record["source"]) == (member["fingerprint"], member["source"])
    assert "setup: Stack(sent, tags)" in done.stdout


def test_on_with_a_copy_of_the_members_folder_is_accepted(world, tmp_path):
    copy = tmp_path / "copy-of-small-xlmr"
    shutil.copytree(world["folder"], copy)
    done = run("train", "--task", "toy-tags", "--on", "Stack(sent)", "--backbone", copy, "--zoo", world["zoo"],
               "--runs-dir", tmp_path / "runs", "--name", "tags", "-q", *FAST)
    assert done.exit_code == 0, done.output
    source = json.loads((tmp_path / "runs" / "tags" / "manifest.json").read_text())["backbone"]["source"]
    assert source == {**world["member"]["backbone"]["source"], "local": str(copy.resolve())}


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(spec):
        raise AssertionError(f"loaded {spec.name}")
    monkeypatch.setattr(train_steps, "load_backbone", refuse)


def test_on_with_another_backbone_is_refused_before_loading(world, tmp_path, no_loading):
    other = tmp_path / "other"
    shutil.copytree(world["folder"], other)
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")  # other content
    ours = f"'{world['folder']}' (folder sha256 {digest(world['folder'])[:16]})"
    args = ("train", "--task", "toy-tags", "--on", "Stack(sent)", "--zoo", world["zoo"], "--runs-dir", tmp_path,
            "-q", *FAST)
    for given, shown in (("tiny", "'tiny'"), (other, f"'{other}' (folder sha256 {digest(other)[:16]})")):
        done = run(*args, "--backbone", given)
        assert done.exit_code == 2, done.output
        assert done.stderr == (f"error: backbone {shown} is not the one the composition members were trained on: "
                               f"'sent' was trained on {ours}; leave --backbone out to train on theirs\n")
    # also from a config file or an override: any backbone named is checked
    done = run(*args, "backbone.name=tiny")
    assert done.exit_code == 2 and done.stderr.startswith("error: backbone 'tiny' is not the one")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


def test_evaluate_loads_the_backbone_once(world, monkeypatch):
    loaded = []
    real = inference.load_backbone

    def counted(spec):
        loaded.append(spec.name)
        return real(spec)

    monkeypatch.setattr(inference, "load_backbone", counted)
    done = run("evaluate", "sent", "--zoo", world["zoo"], "--langs", "en,xa", "--max-examples", "4", "-q",
               "--output", world["root"] / "once.json")
    assert done.exit_code == 0, done.output
    assert loaded == [str(world["folder"].resolve())]


def test_an_artifact_follows_its_backbone_folder_by_fingerprint(world, tmp_path, monkeypatch):
    """Trained with a relative folder name; evaluated from elsewhere (the absolute folder is recorded); after
    the folder moved, refused with a pointer to --backbone, which then loads it from its new place."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(world["folder"], tmp_path / "bb")
    zoo = tmp_path / "zoo"
    assert run("train", "--task", "toy-sentiment", "--backbone", "bb", "--name", "rel", "--zoo", zoo, "-q",
               *FAST).exit_code == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    evaluate = ("evaluate", "rel", "--zoo", zoo, "--langs", "en,xb", "--max-examples", "8", "-q", "--output")
    before = run(*evaluate, tmp_path / "before.json")
    assert before.exit_code == 0, before.output
    (tmp_path / "bb").rename(tmp_path / "moved")
    refused = run(*evaluate, tmp_path / "refused.json")
    assert refused.exit_code == 2 and refused.stderr == (
        f"error: 'rel' was trained on the backbone folder '{tmp_path / 'bb'}', which is not there: pass --backbone "
        "with where it is now (its fingerprint is checked)\n")
    after = run(*evaluate, tmp_path / "after.json", "--backbone", tmp_path / "moved")
    assert after.exit_code == 0, after.output
    scores = [json.loads((tmp_path / f).read_text())["scores"] for f in ("before.json", "after.json")]
    assert scores[0] == scores[1] and not (tmp_path / "refused.json").exists()


# ----------------------------------------------------------------------------------------- data provenance
PAWSX_TRAIN = "".join(f"a{i} b\tb a{i}\t{i % 2}\n" for i in range(40))
PAWSX_DEV = "".join(f"c{i} d\td c{i}\t{i % 2}\n" for i in range(20))
PAWSX_TEST_DE = "".join(f"e{i} f\tf e{i}\t{i % 2}\n" for i in range(10))


def test_manifest_and_evaluation_record_the_data_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = {"train-en.tsv": PAWSX_TRAIN, "dev-en.tsv": PAWSX_DEV, "test-de.tsv": PAWSX_TEST_DE}
    for name, text in files.items():
        (tmp_path / "data" / "target" / "pawsx").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "target" / "pawsx" / name).write_text(text)

    def file(name: str) -> dict:
        return {"path": f"target/pawsx/{name}", "sha256": hashlib.sha256(files[name].encode()).hexdigest(),
                "bytes": len(files[name].encode())}

    done = run("train", "--task", "pawsx", "--data-dir", "data", "--name", "px", "--zoo", "zoo", "-q", *FAST)
    assert done.exit_code == 0, done.output
    data = json.loads((tmp_path / "zoo" / "px" / "manifest.json").read_text())["data"]
    assert data["sources"] == {"pawsx": {
        "train": {"split": "train", "language": "en", "examples": 32, "sources": [file("train-en.tsv")]},
        "dev": {"split": "validation", "language": "en", "examples": 16, "sources": [file("dev-en.tsv")]}}}
    done = run("evaluate", "px", "--zoo", "zoo", "--langs", "de", "-q")
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "zoo" / "px" / "evaluations" / "pawsx.test.json").read_text())
    assert report["sources"] == {"de": [file("test-de.tsv")]} and report["examples"] == {"de": 10}


# ------------------------------------------------------------------------------- evaluate, zoo show, tasks
@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """A toy-sentiment adapter and a run stacked on it, on the tiny backbone."""
    root = tmp_path_factory.mktemp("tiny")
    assert run("train", "--task", "toy-sentiment", "--name", "sent", "--zoo", root / "zoo", "-q", *FAST).exit_code == 0
    done = run("train", "--task", "toy-tags", "--on", "Stack(sent)", "--name", "tags", "--zoo", root / "zoo",
               "--runs-dir", root / "runs", "-q", *FAST)
    assert done.exit_code == 0, done.output
    return root


def test_evaluate_headline_is_the_zero_shot_mean(tiny_world, tmp_path):
    out = tmp_path / "eval.json"
    done = run("evaluate", "sent", "--zoo", tiny_world / "zoo", "--langs", "en,xa,xb", "--max-examples", "8", "-q",
               "--output", out)
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text())
    xa, xb = (report["scores"][lang]["accuracy"] for lang in ("xa", "xb"))
    assert report["zero_shot"] == {"mean": (xa + xb) / 2, "languages": ["xa", "xb"]}
    assert f"zero-shot accuracy: {(xa + xb) / 2:.2f} (mean of xa, xb; en apart)\n" in done.stdout
    english = run("evaluate", "sent", "--zoo", tiny_world / "zoo", "--langs", "en", "--max-examples", "8", "-q",
                  "--output", out)
    assert english.exit_code == 0 and "zero-shot" not in english.stdout
    assert "zero_shot" not in json.loads(out.read_text())


def test_zoo_show_takes_a_run_folder_or_an_entry(tiny_world, tmp_path, monkeypatch):
    run_dir = tiny_world / "runs" / "tags"
    shown = run("zoo", "show", run_dir, "--zoo", tiny_world / "zoo")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == json.loads((run_dir / "manifest.json").read_text())
    # a folder of the same name in the working directory does not hide the entry
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sent").mkdir()
    entry = run("zoo", "show", "sent", "--zoo", tiny_world / "zoo")
    assert entry.exit_code == 0 and json.loads(entry.stdout)["name"] == "sent"
    # a run's weights are checked like an entry's
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "target" / "adapter.safetensors").write_bytes(b"x")
    refused = run("zoo", "show", broken, "--zoo", tiny_world / "zoo")
    assert refused.exit_code == 2
    assert refused.stderr == f"error: '{broken}': weights file target/adapter.safetensors is corrupted (sha256 mismatch)\n"


def test_tasks_json_lists_every_task_with_its_fields():
    done = run("tasks", "--json")
    assert done.exit_code == 0
    data = json.loads(done.stdout)
    assert done.stdout == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert list(data) == ["tasks"] and [t["name"] for t in data["tasks"]] == list(TASKS)
    expected_keys = {f.name for f in fields(TaskSpec)} | {"trainable", "main_metric"}
    assert all(set(t) == expected_keys and list(t) == sorted(t) for t in data["tasks"])
    by_name = {t["name"]: t for t in data["tasks"]}
    assert {k: by_name["xnli"][k] for k in ("format", "metric", "main_metric", "train_from", "labels", "trainable")} \
        == {"format": "classification", "metric": "accuracy", "main_metric": "accuracy", "train_from": "mnli",
            "labels": ["entailment", "neutral", "contradiction"], "trainable": True}
    assert len(by_name["xnli"]["languages"]) == 15 and by_name["panx"]["main_metric"] == "f1"
    assert (by_name["tatoeba"]["trainable"], by_name["tatoeba"]["format"]) == (False, "retrieval")
    assert by_name["toy-choice"]["num_choices"] == 4 and by_name["toy-qa"]["source"] == "generated (stepstone.toy)"


# ------------------------------------------------------------------------------------- -q and completion
@pytest.mark.parametrize("args,quiet", [(("-q", "train"), True), (("train", "-q"), True), (("train",), False),
                                        (("--quiet", "train"), True)])
def test_global_quiet(monkeypatch, args, quiet):
    from stepstone.progress import PlainProgress, silent

    seen = []

    def fake_train_run(spec, *, progress, **kwargs):
        seen.append(progress)
        raise StepstoneError("stopped before training")

    monkeypatch.setattr(pipelines, "train_run", fake_train_run)
    done = run(*args, "--task", "toy-tags")
    assert done.exit_code == 2 and done.stderr == "error: stopped before training\n"
    # CliRunner's stderr is not a terminal: plain progress lines unless quiet
    assert len(seen) == 1 and (seen[0] is silent if quiet else isinstance(seen[0], PlainProgress))


def test_shell_completion_of_task_names(monkeypatch):
    env = {"_STEPSTONE_COMPLETE": "complete_bash", "COMP_WORDS": "stepstone train --task toy-", "COMP_CWORD": "3"}
    done = CliRunner().invoke(app, [], prog_name="stepstone", env=env)
    assert done.exit_code == 0 and done.stdout == "toy-choice\ntoy-pair\ntoy-qa\ntoy-sentiment\ntoy-tags\n"
    env.update(COMP_WORDS="stepstone evaluate run --task xn", COMP_CWORD="4")
    assert CliRunner().invoke(app, [], prog_name="stepstone", env=env).stdout == "xnli\n"
    # typer detects the shell from the parent processes (shellingham): a run detached from a shell (nohup, a CI
    # runner) has none and would print "Shell  not supported"; the test runs as if from bash, wherever it runs
    monkeypatch.setattr("typer.completion._get_shell_name", lambda: "bash")
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="stepstone")
    assert script.exit_code == 0 and "complete -o default -F _stepstone_completion stepstone" in script.stdout


def test_unknown_task_suggestions():
    valid = ", ".join(TASKS)
    with pytest.raises(StepstoneError) as err:
        TASKS.get("toy-tagz")
    assert str(err.value) == f"unknown task 'toy-tagz' (valid: {valid}), did you mean 'toy-tags'?"
    assert TASKS.unknown("qwertyuiop") == f"unknown task 'qwertyuiop' (valid: {valid})"  # nothing close: no guess
