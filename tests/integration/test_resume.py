"""Resumable training: a run stopped at any step (an exception, SIGKILL) and resumed from its latest
checkpoint ends bitwise where the uninterrupted run ends; a non-finite loss stops with the step named
and the last good checkpoint kept."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepstone import pipelines
from stepstone.checkpoint import Checkpoints
from stepstone.errors import StepstoneError
from stepstone.composition import parse
from stepstone.specs import BackboneSpec, MethodSpec, Precision, RunSpec, TrainSpec
from stepstone.zoo import Zoo

torch.set_num_threads(1)
TRAIN = TrainSpec(epochs=2, batch_size=8, max_train_examples=40, max_eval_examples=16, lr=5e-3, checkpoint_every=3)


class Stop(Exception):
    """Stands for the process dying right after a checkpoint."""


def spec(name: str = "r", tasks: tuple[str, ...] = ("toy-tags",), compose: str | None = None, **train) -> RunSpec:
    return RunSpec(task=list(tasks), name=name, method=MethodSpec(kind="bottleneck"),
                   backbone=BackboneSpec("tiny"), train=replace(TRAIN, **train),
                   compose=parse(compose) if compose else None)


def weights(outcome) -> dict[str, torch.Tensor]:
    files = sorted(outcome.path.rglob("*.safetensors"))
    return {f"{f.relative_to(outcome.path)}:{k}": t for f in files for k, t in load_file(str(f)).items()}


def assert_same(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and wa
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    for key in ("history", "metrics"):
        assert a.manifest[key] == b.manifest[key]
    drop = {"kind", "step", "epoch", "lr", "loss", "tasks", "dev"}
    assert [{k: r[k] for k in drop & r.keys()} for r in a.result.log] == \
        [{k: r[k] for k in drop & r.keys()} for r in b.result.log]


def stopped(run: RunSpec, zoo: Zoo, runs: Path, monkeypatch, at: int = 3) -> None:
    """Train `run` and stop it right after the checkpoint of step `at`."""
    save = Checkpoints.save

    def save_then_stop(self, state):
        path = save(self, state)
        if state.step == at:
            raise Stop
        return path

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoints, "save", save_then_stop)
        with pytest.raises(Stop):
            pipelines.train_run(run, zoo=zoo, runs_dir=runs)


def interrupted(tmp_path: Path, run: RunSpec, at: int, monkeypatch, zoo: Zoo | None = None):
    """Train `run`, stop it right after the checkpoint of step `at`, resume it; return the outcome."""
    zoo = zoo or Zoo(tmp_path / "zoo")
    stopped(run, zoo, tmp_path / "runs", monkeypatch, at)
    checkpoint = tmp_path / "runs" / f"{run.name}.checkpoint"
    assert [p.name for p in checkpoint.iterdir()] == [f"step-{at:07d}"]
    assert run.name not in zoo.names()
    outcome = pipelines.train_run(run, zoo=zoo, runs_dir=tmp_path / "runs", resume=True)
    assert not checkpoint.exists()  # removed once the artifact is saved
    return outcome


@pytest.mark.parametrize("at", [3, 6, 9], ids=lambda s: f"step{s}")  # epoch 1 has 5 steps: 6 is mid-epoch 2
def test_resume_mid_run_matches_an_uninterrupted_run(tmp_path, monkeypatch, at):
    whole = pipelines.train_run(spec(), zoo=Zoo(tmp_path / "a" / "zoo"), runs_dir=tmp_path / "a" / "runs")
    assert_same(interrupted(tmp_path / "b", spec(), at, monkeypatch), whole)


@pytest.mark.parametrize("settings", [
    dict(grad_accum=2, checkpoint_every=1, select_best=True),
    dict(group_by_length=True, precision=Precision.BF16),
    dict(tasks=("toy-tags", "toy-sentiment")),
], ids=["grad-accum", "grouped-bf16", "multi-task"])
def test_resume_keeps_every_training_feature_exact(tmp_path, monkeypatch, settings):
    tasks = settings.pop("tasks", ("toy-tags",))
    run = spec(tasks=tasks, **settings)
    whole = pipelines.train_run(run, zoo=Zoo(tmp_path / "a" / "zoo"), runs_dir=tmp_path / "a" / "runs")
    assert_same(interrupted(tmp_path / "b", run, 3, monkeypatch), whole)


def test_resume_a_fusion_run(tmp_path, monkeypatch):
    for root in ("a", "b"):
        zoo = Zoo(tmp_path / root / "zoo")
        for member in ("m1", "m2"):
            pipelines.train_run(spec(member, epochs=1), zoo=zoo, runs_dir=tmp_path / root / "runs")
    run = spec("f", compose="Fuse(m1, m2)")
    whole = pipelines.train_run(run, zoo=Zoo(tmp_path / "a" / "zoo"), runs_dir=tmp_path / "a" / "runs")
    assert_same(interrupted(tmp_path / "b", run, 6, monkeypatch, Zoo(tmp_path / "b" / "zoo")), whole)


def test_a_checkpoint_is_never_resumed_by_another_configuration(tmp_path, monkeypatch):
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    with pytest.raises(StepstoneError, match=r"nothing to resume: no checkpoint in .*r\.checkpoint"):
        pipelines.train_run(spec(), zoo=zoo, runs_dir=runs, resume=True)
    save = Checkpoints.save

    def save_then_stop(self, state):
        save(self, state)
        raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoints, "save", save_then_stop)
        with pytest.raises(Stop):
            pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
    with pytest.raises(StepstoneError, match=r"holds a checkpoint of an unfinished run \(step-0000003\): pass --resume"):
        pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
    with pytest.raises(StepstoneError, match=r"written by a different configuration \(train\.lr: 0\.005 -> 0\.001\)"):
        pipelines.train_run(spec(lr=1e-3), zoo=zoo, runs_dir=runs, resume=True)
    assert zoo.names() == []
    # threads and checkpoint_every do not change what is computed: a resume may change them
    resumed = pipelines.train_run(spec(threads=1, checkpoint_every=4), zoo=zoo, runs_dir=runs, resume=True)
    assert resumed.manifest["spec"]["train"]["threads"] == 1 and len(resumed.manifest["history"]) == 2
    assert [r["step"] for r in resumed.result.log if r["kind"] == "step"] == list(range(1, 11))


def test_a_non_finite_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import torch.nn.functional as F

    calls, cross_entropy = [], F.cross_entropy

    def poisoned(*args, **kwargs):  # the 5th training loss is NaN
        calls.append(1)
        loss = cross_entropy(*args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    with pytest.raises(StepstoneError) as caught:
        pipelines.train_run(spec(checkpoint_every=2), zoo=zoo, runs_dir=runs)
    assert str(caught.value) == (
        f"training diverged: loss is nan at step 5 (epoch 1); the last good checkpoint (step-0000004) is kept in "
        f"{runs / 'r.checkpoint'}; lower train.lr or check the data")
    assert zoo.names() == [] and [p.name for p in (runs / "r.checkpoint").iterdir()] == ["step-0000004"]


def test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run(tmp_path):
    """The real thing: `stepstone train` in a subprocess, SIGKILL at a random step, `--resume`."""
    common = ["--task", "toy-tags", "--backbone", "tiny", "--name", "k", "-q", "train.epochs=3", "train.batch_size=2",
              "train.max_train_examples=200", "train.max_eval_examples=16", "train.lr=5e-3", "train.threads=1",
              "--checkpoint-every", "7"]
    env = {**os.environ, "STEPSTONE_THREADS": "1"}

    def command(where: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "stepstone_cli.main", "train", *common, "--zoo", str(where / "zoo"),
                "--runs-dir", str(where / "runs"), *extra]

    whole = subprocess.run(command(tmp_path / "a"), env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    at = random.randrange(7, 280)  # 300 steps in all; printed by pytest on failure
    process = subprocess.Popen(command(tmp_path / "b"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "b" / "runs" / "k.checkpoint"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        steps = [int(p.name[5:]) for p in checkpoint.glob("step-*")] if checkpoint.is_dir() else []
        if steps and max(steps) + 7 > at:
            break
        time.sleep(0.005)
    assert process.poll() is None, f"the run ended before step {at}: {process.stderr.read()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "b" / "zoo" / "k").exists()
    resumed = subprocess.run(command(tmp_path / "b", "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not checkpoint.exists()
    a, b = tmp_path / "a" / "zoo" / "k", tmp_path / "b" / "zoo" / "k"
    files = sorted(p.name for p in a.glob("*.safetensors"))
    assert files == sorted(p.name for p in b.glob("*.safetensors")) and files
    for name in files:
        wa, wb = load_file(str(a / name)), load_file(str(b / name))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f"{name} differs (killed near step {at})"
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["metrics"] == mb["metrics"] and ma["history"] == mb["history"]


# ---------------------------------------------------------------- inputs the spec names (issue 13)
def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_resume_refuses_a_replaced_stack_member(tmp_path, monkeypatch):
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    pipelines.train_run(spec("m", epochs=1), zoo=zoo, runs_dir=runs)
    original = tmp_path / "original-m"
    shutil.copytree(zoo.path("m"), original)
    run = spec("t", compose="Stack(m)")
    stopped(run, zoo, runs, monkeypatch)
    old = json.loads((zoo.path("m") / "manifest.json").read_text())["files"]["adapter.safetensors"]
    zoo.remove("m")  # replaced: the same name, trained again with another seed
    pipelines.train_run(spec("m", epochs=1, seed=7), zoo=zoo, runs_dir=runs)
    new = json.loads((zoo.path("m") / "manifest.json").read_text())["files"]["adapter.safetensors"]
    assert old != new
    before = snapshot(tmp_path)
    with pytest.raises(StepstoneError) as caught:
        pipelines.train_run(run, zoo=zoo, runs_dir=runs, resume=True)
    assert str(caught.value) == (
        f"{runs / 't.checkpoint'} was written with other inputs: zoo member 'm' changed (adapter.safetensors: "
        f"sha256 {old[:12]} -> {new[:12]}) since; resume needs the same ones: put them back, or remove the folder "
        f"to start over")
    assert snapshot(tmp_path) == before  # nothing written, the checkpoint kept
    zoo.remove("m")
    shutil.copytree(original, zoo.path("m"))  # the original back: the run resumes, as if never stopped
    resumed = pipelines.train_run(run, zoo=zoo, runs_dir=runs, resume=True)
    whole_zoo = Zoo(tmp_path / "whole" / "zoo")
    shutil.copytree(original, whole_zoo.path("m"))
    assert_same(resumed, pipelines.train_run(run, zoo=whole_zoo, runs_dir=tmp_path / "whole" / "runs"))


def test_resume_refuses_changed_training_data(tmp_path, monkeypatch):
    sst2 = tmp_path / "data" / "intermediate" / "sst2"
    sst2.mkdir(parents=True)
    lines = [f"{'good' if i % 2 else 'bad'} film number {i}\t{i % 2}\n" for i in range(40)]
    rows = "".join(lines)
    (sst2 / "train.tsv").write_text("sentence\tlabel\n" + rows)
    (sst2 / "dev.tsv").write_text("sentence\tlabel\n" + "".join(lines[:16]))
    run = replace(spec(), task=["sst2"], data_dir=tmp_path / "data")
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    stopped(run, zoo, runs, monkeypatch)
    (sst2 / "train.tsv").write_text("sentence\tlabel\n" + rows.replace("number 7\t1", "number 7\t0"))
    with pytest.raises(StepstoneError) as caught:
        pipelines.train_run(run, zoo=zoo, runs_dir=runs, resume=True)
    assert str(caught.value) == (
        f"{runs / 'r.checkpoint'} was written with other inputs: the examples of task 'sst2' changed (a data file "
        f"was edited or replaced) since; resume needs the same ones: put them back, or remove the folder to start over")


def test_resume_refuses_a_changed_init_from_run_and_backbone(tmp_path, monkeypatch):
    from stepstone.backbone import load_backbone

    folder = tmp_path / "tiny"  # a local backbone folder
    loaded = load_backbone(BackboneSpec("tiny"))
    loaded.model.save_pretrained(str(folder))
    loaded.tokenizer.save_pretrained(str(folder))
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    full = replace(spec("base", epochs=1), method=MethodSpec(kind="full"), backbone=BackboneSpec(str(folder)))
    pipelines.train_run(full, zoo=zoo, runs_dir=runs)
    run = replace(full, name="after", init_from=runs / "base", train=replace(TRAIN, epochs=1))
    stopped(run, zoo, runs, monkeypatch)
    old = json.loads((runs / "base" / "manifest.json").read_text())["files"]
    shutil.rmtree(runs / "base")
    pipelines.train_run(replace(full, train=replace(full.train, seed=3)), zoo=zoo, runs_dir=runs)
    new = json.loads((runs / "base" / "manifest.json").read_text())["files"]
    changed = next(name for name in sorted(new) if old.get(name) != new[name])  # every file is hashed: the first
    assert old["model.safetensors"] != new["model.safetensors"]
    with pytest.raises(StepstoneError) as caught:
        pipelines.train_run(run, zoo=zoo, runs_dir=runs, resume=True)
    assert str(caught.value) == (
        f"{runs / 'after.checkpoint'} was written with other inputs: init_from '{runs / 'base'}' changed "
        f"({changed}: sha256 {old[changed][:12]} -> {new[changed][:12]}) since; resume needs the same ones: put them "
        f"back, or remove the folder to start over")
    # the backbone folder's weights replaced (same architecture): its fingerprint changes
    plain = replace(spec("p"), backbone=BackboneSpec(str(folder)))
    stopped(plain, zoo, runs, monkeypatch)
    before = load_backbone(BackboneSpec(str(folder))).fingerprint
    with torch.no_grad():
        loaded.model.base_model.embeddings.word_embeddings.weight.mul_(2)
    loaded.model.save_pretrained(str(folder))
    after = load_backbone(BackboneSpec(str(folder))).fingerprint
    with pytest.raises(StepstoneError) as caught:
        pipelines.train_run(plain, zoo=zoo, runs_dir=runs, resume=True)
    assert str(caught.value) == (
        f"{runs / 'p.checkpoint'} was written with other inputs: the backbone changed (fingerprint {before} -> "
        f"{after}) since; resume needs the same ones: put them back, or remove the folder to start over")
