"""SIGINT / SIGTERM: training stops after the optimizer step in progress, saves a checkpoint of that step and
reports it in one line (exit 130 / 143) with the command that resumes it; the resumed run ends bitwise where
an uninterrupted run ends. A second signal cannot cut the checkpoint short; signals outside the training loop
leave nothing half-written; the previous signal handlers are back afterwards. The same for grids, naming the
cell."""
from __future__ import annotations

import json
import os
import re
import shlex
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
from stepstone.pipelines import evaluation
from stepstone.pipelines import train as train_steps
from stepstone.manifest import read_manifest
from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, load_records, run_grid
from stepstone.interrupts import Interrupted
from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec
from stepstone.zoo import Zoo

torch.set_num_threads(1)
TRAIN = TrainSpec(epochs=2, batch_size=8, max_train_examples=40, max_eval_examples=16, lr=5e-3, checkpoint_every=3)
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


def spec(name: str = "r", **train) -> RunSpec:
    return RunSpec(task=["toy-tags"], name=name, method=MethodSpec(kind="bottleneck"),
                   backbone=BackboneSpec("tiny"), train=replace(TRAIN, **train))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.rglob("*.safetensors"))
    return {f"{f.relative_to(folder)}:{k}": t for f in files for k, t in load_file(str(f)).items()}


def assert_same_artifact(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and wa
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma["metrics"] == mb["metrics"] and ma["history"] == mb["history"]
    drop = {"kind", "step", "epoch", "lr", "loss", "tasks", "dev"}
    la, lb = ((a / "train_log.jsonl").read_text().splitlines(), (b / "train_log.jsonl").read_text().splitlines())
    assert [{k: r[k] for k in drop & r.keys()} for r in map(json.loads, la)] == \
        [{k: r[k] for k in drop & r.keys()} for r in map(json.loads, lb)]


def handlers() -> tuple:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Send `signum` to this process during the `step`-th optimizer step (as it clips the gradients)."""
    clip, calls = torch.nn.utils.clip_grad_norm_, []

    def clip_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signum)
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_then_signal)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The uninterrupted run the interrupted ones are compared with."""
    root = tmp_path_factory.mktemp("whole")
    return pipelines.train_run(spec(), zoo=Zoo(root / "zoo"), runs_dir=root / "runs").path


@pytest.mark.parametrize("signum,at", [(signal.SIGINT, 4), (signal.SIGTERM, 7), (signal.SIGINT, 5)],
                         ids=["sigint-step4", "sigterm-step7-epoch2", "sigint-last-step-of-epoch1"])
def test_a_signal_saves_the_step_in_progress_and_resume_is_exact(tmp_path, monkeypatch, whole, signum, at):
    zoo, runs, before = Zoo(tmp_path / "zoo"), tmp_path / "runs", handlers()
    with monkeypatch.context() as patch:
        signal_at_step(patch, at, signum)
        with pytest.raises(Interrupted) as caught:
            pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
    stop = caught.value
    epoch = 1 if at <= 5 else 2  # 5 steps per epoch
    assert str(stop) == (f"interrupted ({NAMES[signum]}) at step {at} of 10 (epoch {epoch}): saved the checkpoint "
                         f"{runs / 'r.checkpoint' / f'step-{at:07d}'}")
    assert (stop.exit_code, stop.resumable, stop.primary) == (128 + signum, True, True)
    assert handlers() == before  # the library put the previous handlers back
    # the checkpoint of that step alone (it replaced step 3's, or 6's); no lock, no temporary folder left
    assert listing(runs) == ["r.checkpoint"] and listing(runs / "r.checkpoint") == [f"step-{at:07d}"]
    assert not zoo.root.exists()
    resumed = pipelines.train_run(spec(), zoo=zoo, runs_dir=runs, resume=True)
    assert_same_artifact(resumed.path, whole)
    assert listing(runs) == [] and listing(zoo.root) == ["r"]


def test_a_second_signal_while_the_checkpoint_is_saved_is_ignored(tmp_path, monkeypatch, whole):
    import safetensors.torch

    from stepstone import interrupts

    zoo, runs, save_file, seconds = Zoo(tmp_path / "zoo"), tmp_path / "runs", safetensors.torch.save_file, []

    def save_under_fire(*args, **kwargs):  # Ctrl-C pressed again, and SIGTERM, while the checkpoint is written
        if interrupts.received() is not None:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            seconds.append(1)
        return save_file(*args, **kwargs)

    with monkeypatch.context() as patch:
        signal_at_step(patch, 4, signal.SIGINT)
        patch.setattr(safetensors.torch, "save_file", save_under_fire)
        with pytest.raises(Interrupted, match=r"^interrupted \(SIGINT\) at step 4 of 10 \(epoch 1\): saved the "):
            pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
    assert seconds == [1]
    assert listing(runs / "r.checkpoint") == ["step-0000004"]
    assert sorted(p.name for p in (runs / "r.checkpoint" / "step-0000004").iterdir()) == \
        ["state.json", "tensors.safetensors"]
    assert_same_artifact(pipelines.train_run(spec(), zoo=zoo, runs_dir=runs, resume=True).path, whole)


def test_without_checkpoints_an_interrupt_says_nothing_was_saved(tmp_path, monkeypatch):
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    signal_at_step(monkeypatch, 2, signal.SIGINT)
    with pytest.raises(Interrupted) as caught:
        pipelines.train_run(spec(checkpoint_every=0), zoo=zoo, runs_dir=runs)
    assert str(caught.value) == \
        "interrupted (SIGINT) at step 2 of 10 (epoch 1): nothing saved (train.checkpoint_every=0)"
    assert not caught.value.resumable
    assert not runs.exists() and not zoo.root.exists()  # the lock files and their folders are gone too


def test_a_signal_before_training_stops_at_once_and_leaves_nothing(tmp_path, monkeypatch):
    zoo, runs, before, load = Zoo(tmp_path / "zoo"), tmp_path / "runs", handlers(), train_steps.load_examples

    def load_then_signal(*args, **kwargs):
        examples = load(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return examples

    monkeypatch.setattr(train_steps, "load_examples", load_then_signal)
    with pytest.raises(Interrupted) as caught:
        pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
    assert str(caught.value) == "interrupted (SIGTERM) before the run was saved: no checkpoint was written"
    assert (caught.value.exit_code, caught.value.resumable) == (143, False)
    assert handlers() == before
    assert not runs.exists() and not zoo.root.exists()


def test_a_resumed_run_interrupted_before_training_keeps_its_checkpoint(tmp_path, monkeypatch, whole):
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    with monkeypatch.context() as patch:
        signal_at_step(patch, 4, signal.SIGINT)
        with pytest.raises(Interrupted):
            pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
    with monkeypatch.context() as patch:
        patch.setattr(train_steps, "load_backbone", lambda *a: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(Interrupted) as caught:
            pipelines.train_run(spec(), zoo=zoo, runs_dir=runs, resume=True)
    assert str(caught.value) == ("interrupted (SIGINT) before the run was saved: the last good checkpoint "
                                 f"(step-0000004) is kept in {runs / 'r.checkpoint'}")
    assert caught.value.resumable
    assert_same_artifact(pipelines.train_run(spec(), zoo=zoo, runs_dir=runs, resume=True).path, whole)


def test_a_signal_during_the_final_save_lets_it_finish(tmp_path, monkeypatch, whole):
    from stepstone import methods

    zoo, runs, save = Zoo(tmp_path / "zoo"), tmp_path / "runs", methods.save_adapter

    def save_under_fire(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        save(*args, **kwargs)

    monkeypatch.setattr(methods, "save_adapter", save_under_fire)
    with pytest.raises(Interrupted) as caught:
        pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
    assert str(caught.value) == f"interrupted (SIGINT) after the run was saved to {zoo.root / 'r'}"
    assert not caught.value.resumable
    assert_same_artifact(zoo.root / "r", whole)  # complete: every hash verified
    assert listing(zoo.root) == ["r"] and listing(runs) == []  # checkpoints cleared, locks released


# ------------------------------------------------------------------------------------- the real CLI
COMMON = ["train", "--task", "toy-tags", "--backbone", "tiny", "--name", "k", "-q", "train.epochs=4",
          "train.batch_size=2", "train.max_train_examples=200", "train.max_eval_examples=16", "train.lr=5e-3",
          "train.threads=1", "--checkpoint-every", "7"]
ENV = {**os.environ, "STEPSTONE_THREADS": "1"}
CLI = [sys.executable, "-m", "stepstone_cli.main"]


def train_args(where: Path) -> list[str]:
    return [*COMMON, "--zoo", str(where / "zoo"), "--runs-dir", str(where / "runs")]


def wait_for(paths, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not any(True for _ in paths()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, f"it ended first: {process.stderr.read()}"


@pytest.fixture(scope="module")
def whole_cli(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("whole-cli")
    done = subprocess.run([*CLI, *train_args(where)], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return where / "zoo" / "k"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stepstone_train_interrupted_for_real_says_how_to_resume_and_resumes_exactly(tmp_path, whole_cli, signum):
    args = train_args(tmp_path)
    process = subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "runs" / "k.checkpoint"
    wait_for(lambda: checkpoint.glob("step-*"), process)  # training is under way (400 steps in all)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert out == ""
    found = re.fullmatch(rf"interrupted \({NAMES[signum]}\) at step (\d+) of 400 \(epoch (\d)\): saved the checkpoint "
                         rf"(\S+); resume with: (.+)\n", err)
    assert found, err
    step = int(found[1])
    assert found[3] == str(checkpoint / f"step-{step:07d}") and listing(checkpoint) == [f"step-{step:07d}"]
    assert int(found[2]) == (step - 1) // 100 + 1
    assert found[4] == shlex.join(["stepstone", *args, "--resume"])  # exactly this command, plus --resume
    assert not (tmp_path / "zoo").exists()
    resumed = subprocess.run([*CLI, *shlex.split(found[4])[1:]], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_artifact(tmp_path / "zoo" / "k", whole_cli)
    assert listing(tmp_path / "runs") == [] and listing(tmp_path / "zoo") == ["k"]


# ------------------------------------------------------------------------------------------- grids
def tiny_grid(**train) -> GridSpec:
    return GridSpec(intermediate=("toy-sentiment",), targets=(TargetSpec("toy-tags", langs=("en",)),),
                    preset=Preset.TINY, seeds=(0,), methods=("bottleneck",), setups=(Setup.STACK,),
                    full_finetune=False, train={"checkpoint_every": 3, **train})


def test_a_grid_interrupted_in_a_cell_in_process_continues_exactly(tmp_path, monkeypatch):
    reference = run_grid(tiny_grid(), tmp_path / "a", isolate=False)
    assert reference.failed == [] and reference.ran == 2
    folder = tmp_path / "b"
    with monkeypatch.context() as patch:
        signal_at_step(patch, 2, signal.SIGINT)
        with pytest.raises(Interrupted) as caught:
            run_grid(tiny_grid(), folder, isolate=False)
    checkpoint = folder / "runs" / "bottleneck-toy-sentiment.checkpoint"
    assert str(caught.value) == ("interrupted (SIGINT) in cell intermediate/bottleneck/toy-sentiment at step 2 of 2 "
                                 f"(epoch 1): saved the checkpoint {checkpoint / 'step-0000002'}")
    assert caught.value.resumable
    assert not (folder / CELLS).exists()  # the interrupted cell is not recorded as failed
    rest = run_grid(tiny_grid(), folder, isolate=False)
    assert (rest.ran, rest.failed) == (2, [])
    entry = "zoo/bottleneck-toy-sentiment"
    assert_same_artifact(folder / entry, tmp_path / "a" / entry)
    scores = {i: r.get("scores") for i, r in load_records(folder / CELLS).items()}
    assert scores == {i: r.get("scores") for i, r in load_records(tmp_path / "a" / CELLS).items()}
    assert scores["target/toy-tags/bottleneck/stack-toy-sentiment/seed0"]


GRID_YAML = ("preset: tiny\nintermediate: [toy-sentiment]\nseeds: [0]\nmethods: [bottleneck]\nsetups: [stack]\n"
             "full_finetune: false\ntargets:\n  - {task: toy-tags, langs: [en]}\n"
             "train: {max_train_examples: 400, batch_size: 2, epochs: 3, checkpoint_every: 5}\n")


@pytest.fixture(scope="module")
def whole_grid(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("whole-grid")
    (where / "g.yaml").write_text(GRID_YAML)
    done = subprocess.run([*CLI, "grid", str(where / "g.yaml"), "--out", str(where / "g"), "-q"], env=ENV,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return where / "g"


@pytest.mark.parametrize("signum,group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-to-the-process-group", "sigterm-to-the-grid-alone"])
def test_stepstone_grid_interrupted_in_a_cell_names_it_and_continues(tmp_path, whole_grid, signum, group):
    (tmp_path / "g.yaml").write_text(GRID_YAML)
    args = ["grid", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "g"), "-q"]
    # a session of its own: a process group, as a terminal's Ctrl-C signals (the grid and its cell process)
    process = subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    checkpoint = tmp_path / "g" / "runs" / "bottleneck-toy-sentiment.checkpoint"
    wait_for(lambda: checkpoint.glob("step-*"), process)
    (os.killpg if group else os.kill)(process.pid, signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert out == ""  # -q: "cell k/n ..." is a progress note, silenced
    found = re.fullmatch(rf"interrupted \({NAMES[signum]}\) in cell intermediate/bottleneck/toy-sentiment at step "
                         rf"(\d+) of 600 \(epoch \d\): saved the checkpoint (\S+); continue the grid with: (.+)\n", err)
    assert found, err
    assert found[2] == str(checkpoint / f"step-{int(found[1]):07d}") and listing(checkpoint) == [Path(found[2]).name]
    assert found[3] == shlex.join(["stepstone", *args])
    assert not (tmp_path / "g" / CELLS).exists()
    again = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "2 cells ran, 0 already done, 0 failed" in again.stdout
    entry = "zoo/bottleneck-toy-sentiment"
    assert_same_artifact(tmp_path / "g" / entry, whole_grid / entry)
    assert load_records(tmp_path / "g" / CELLS)["target/toy-tags/bottleneck/stack-toy-sentiment/seed0"]["scores"] == \
        load_records(whole_grid / CELLS)["target/toy-tags/bottleneck/stack-toy-sentiment/seed0"]["scores"]


# ------------------------------------------------------------------------- several processes (DDP)
ACCELERATE = Path(sys.executable).with_name("accelerate")


def children_with_rank(parent: int, rank: int) -> int | None:
    """The PID of the launched process `rank` (a child of `parent`), from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.skipif(not ACCELERATE.is_file(), reason="accelerate's launcher is not installed next to python")
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step_and_resume_is_exact(tmp_path):
    """The processes agree on the step to stop at (or the other would wait for it forever in the next
    all-reduce); the primary saves that step's checkpoint and alone prints the line."""
    import socket

    def launch(where: Path, *extra: str) -> subprocess.Popen:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
                   "-m", "stepstone_cli.main", "train", "--task", "toy-tags", "--backbone", "tiny", "--name", "d", "-q",
                   "train.epochs=30", "train.batch_size=8", "train.max_train_examples=40", "train.max_eval_examples=8",
                   "train.threads=1", "--checkpoint-every", "7", "--zoo", str(where / "zoo"),
                   "--runs-dir", str(where / "runs"), *extra]
        return subprocess.Popen(command, env={**ENV, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    whole = launch(tmp_path / "a")
    out, err = whole.communicate(timeout=900)
    assert whole.returncode == 0, err[-3000:]
    stopped = launch(tmp_path / "b")
    checkpoint = tmp_path / "b" / "runs" / "d.checkpoint"
    wait_for(lambda: checkpoint.glob("step-*"), stopped, 600)
    rank1 = children_with_rank(stopped.pid, 1)
    assert rank1 is not None
    os.kill(rank1, signal.SIGTERM)  # the second process alone, as a scheduler might
    out, err = stopped.communicate(timeout=300)
    assert stopped.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("interrupted (")]
    assert len(lines) == 1, err[-3000:]  # printed by the primary only
    found = re.fullmatch(r"interrupted \(SIGTERM\) at step (\d+) of 150 \(epoch \d+\): saved the checkpoint (\S+); "
                         r"resume with: <the same launcher> -m stepstone_cli.main train .* --resume", lines[0])
    assert found, lines[0]
    assert found[2] == str(checkpoint / f"step-{int(found[1]):07d}") and listing(checkpoint) == [Path(found[2]).name]
    resumed = launch(tmp_path / "b", "--resume")
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-3000:]
    assert_same_artifact(tmp_path / "b" / "zoo" / "d", tmp_path / "a" / "zoo" / "d")


# ------------------------------------------------------------------------------------ evaluate
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_stepstone_evaluate_interrupted_is_one_line_and_writes_nothing(tmp_path, monkeypatch, signum):
    from typer.testing import CliRunner

    from stepstone_cli.main import app

    zoo = Zoo(tmp_path / "zoo")
    pipelines.train_run(replace(spec(), name="tags"), zoo=zoo, runs_dir=tmp_path / "runs")
    before, load = handlers(), evaluation.load_examples

    def load_then_signal(*args, **kwargs):
        examples = load(*args, **kwargs)
        os.kill(os.getpid(), signum)
        return examples

    monkeypatch.setattr(evaluation, "load_examples", load_then_signal)
    done = CliRunner().invoke(app, ["evaluate", "tags", "--zoo", str(zoo.root), "-q"])
    assert (done.exit_code, done.stdout) == (128 + signum, "")
    assert done.stderr == f"interrupted ({NAMES[signum]}); nothing was written\n"
    assert handlers() == before
    assert not (zoo.path("tags") / "evaluations").exists()
