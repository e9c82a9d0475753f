"""What a killed process leaves behind is removed by the next run that touches the folder: every kind the
atomic writers, the checkpoint rotation, the checkpoint clean-up, `zoo rm` and the run locks can leave
(each made here by a real SIGKILL at that moment), and never anything of a live process or another host."""
from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepstone import artifacts
from stepstone.artifacts import remove_leftovers, write_text_atomic
from stepstone.manifest import read_manifest

HOST, ME, DEAD = artifacts._HOST, os.getpid(), 999_999_999  # beyond pid_max: no such process


def test_remove_leftovers_removes_exactly_what_dead_processes_of_this_host_left(tmp_path):
    dead = [f".a.tmp-{HOST}-{DEAD}-x1", f".b.checkpoint.deleting-{HOST}-{DEAD}", f".c.deleting-{DEAD}",
            f".step-0000007.tmp-{HOST}-{DEAD}-zz", f".d.json.tmp-{HOST}-{DEAD}-k2j3", ".e.lock"]
    kept = [f".a.tmp-{HOST}-{ME}-x2", f".b.deleting-{HOST}-{ME}", f".c.deleting-{ME}",  # live: this process
            f".a.tmp-otherhost-{DEAD}-x3", f".b.deleting-otherhost-{DEAD}",  # another host's: cannot be checked
            ".f.lock", ".g.lock", ".lock", ".hidden", "a", "notes.txt", ".h.tmp-abc"]  # held lock, not a lock, others'
    for name in dead[:4] + kept[:5] + ["a"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights.safetensors").write_bytes(b"x" * 10)
    for name in (dead[4], ".hidden", "notes.txt", ".h.tmp-abc", ".lock"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".e.lock").write_text(f"{DEAD}@{HOST}\n")  # its holder was killed: unlocked
    (tmp_path / ".f.lock").write_text(f"{ME}@{HOST}\n")
    (tmp_path / ".g.lock").write_text("not a stepstone lock\n")
    held = os.open(tmp_path / ".f.lock", os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        removed = remove_leftovers(tmp_path)
    finally:
        os.close(held)
    assert removed == sorted(dead)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert remove_leftovers(tmp_path / "missing") == []


def test_a_lock_file_holding_a_digit_int_refuses_is_no_lock_of_ours(tmp_path):
    (tmp_path / ".x.lock").write_text(f"\u00b2@{HOST}\n")  # '²'.isdigit() is true, int('²') raises
    assert artifacts.remove_leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [".x.lock"]


def test_remove_leftovers_of_one_name_leaves_the_others(tmp_path):
    for name in (f".a.json.tmp-{HOST}-{DEAD}-1", f".a.json.x.tmp-{HOST}-{DEAD}-1", f".b.json.tmp-{HOST}-{DEAD}-1"):
        (tmp_path / name).write_text("x")
    assert remove_leftovers(tmp_path, "a.json") == [f".a.json.tmp-{HOST}-{DEAD}-1"]


def test_a_killed_file_write_is_cleared_by_the_next_write_of_that_file(tmp_path):
    script = ("import os, signal, sys; from pathlib import Path; from stepstone.artifacts import write_text_atomic; "
              "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL); "
              "write_text_atomic(Path(sys.argv[1]), 'new')")
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "scores.json")], capture_output=True)
    assert killed.returncode == -9, killed.stderr
    (leftover,) = [p.name for p in tmp_path.iterdir()]
    assert re.fullmatch(rf"\.scores\.json\.tmp-{re.escape(HOST)}-\d+-\w+", leftover)
    write_text_atomic(tmp_path / "scores.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]


# Runs the CLI with one call patched to SIGKILL the process at a chosen moment.
KILLER = textwrap.dedent("""
    import os, shutil, signal, sys
    from pathlib import Path
    stage = sys.argv[1]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if stage in ("checkpoint-clear", "checkpoint-rotation", "zoo-rm"):  # half-way through deleting a folder
        marker = {"checkpoint-clear": ".k.checkpoint.deleting-", "checkpoint-rotation": ".step-0000002.deleting-",
                  "zoo-rm": ".k.deleting-"}[stage]
        rmtree = shutil.rmtree

        def half(path, *args, **kwargs):
            if Path(path).name.startswith(marker):
                next(p for p in sorted(Path(path).rglob("*")) if p.is_file()).unlink()
                die()
            return rmtree(path, *args, **kwargs)

        shutil.rmtree = half
    elif stage == "checkpoint-save":  # the second checkpoint's weights written, its state.json not
        import safetensors.torch
        save_file, saves = safetensors.torch.save_file, []

        def save_then_die(tensors, filename, *args, **kwargs):
            save_file(tensors, filename, *args, **kwargs)
            saves.append(filename)
            if len(saves) == 2:
                die()

        safetensors.torch.save_file = save_then_die
    elif stage == "final-save":  # the adapter written into the artifact's temporary folder
        import stepstone.methods as methods
        save = methods.save_adapter

        def save_then_die(*args, **kwargs):
            save(*args, **kwargs)
            die()

        methods.save_adapter = save_then_die
    elif stage == "training":  # at the third optimizer step
        import torch
        clip, steps = torch.nn.utils.clip_grad_norm_, []

        def clip_then_die(*args, **kwargs):
            steps.append(1)
            if len(steps) == 3:
                die()
            return clip(*args, **kwargs)

        torch.nn.utils.clip_grad_norm_ = clip_then_die
    from stepstone_cli.main import app
    app(sys.argv[2:])
""")
ENV = {**os.environ, "STEPSTONE_THREADS": "1"}


def train(root: Path, name: str = "k", *extra: str) -> list[str]:
    """5 optimizer steps, checkpoints after steps 2 and 4."""
    return ["train", "--task", "toy-tags", "--backbone", "tiny", "--name", name, "-q", "train.epochs=1",
            "train.batch_size=8", "train.max_train_examples=40", "train.max_eval_examples=8", "train.threads=1",
            "--checkpoint-every", "2", "--zoo", str(root / "zoo"), "--runs-dir", str(root / "runs"), *extra]


def run(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    script = ["-c", KILLER, kill_at] if kill_at else ["-m", "stepstone_cli.main"]
    return subprocess.run([sys.executable, *script, *args], env=ENV, capture_output=True, text=True, timeout=600)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def pattern(*names: str) -> list[re.Pattern]:
    mine = r"%s-\d+" % re.escape(HOST)
    return [re.compile(n.replace("PID", mine).replace("RANDOM", r"\w+")) for n in names]


def matches(found: list[str], expected: list[re.Pattern]) -> bool:
    return len(found) == len(expected) and all(any(p.fullmatch(f) for f in found) for p in expected)


# stage -> (what is left in zoo/, runs/ and runs/k.checkpoint/ after the kill, the next run, what is left after it)
STAGES = {
    "checkpoint-clear": ([r"k", r"\.k\.lock"], [r"\.k\.checkpoint\.deleting-PID", r"\.k\.lock"], None, "other"),
    "checkpoint-rotation": ([r"\.k\.lock"], [r"k\.checkpoint", r"\.k\.lock"],
                            [r"step-0000004", r"\.step-0000002\.deleting-PID"], "resume"),
    "checkpoint-save": ([r"\.k\.lock"], [r"k\.checkpoint", r"\.k\.lock"],
                        [r"step-0000002", r"\.step-0000004\.tmp-PID-RANDOM"], "resume"),
    "final-save": ([r"\.k\.tmp-PID-RANDOM", r"\.k\.lock"], [r"k\.checkpoint", r"\.k\.lock"], [r"step-0000004"],
                   "other"),
    "training": ([r"\.k\.lock"], [r"k\.checkpoint", r"\.k\.lock"], [r"step-0000002"], "other"),
    "zoo-rm": ([r"\.k\.deleting-PID"], [], None, "other"),
}


@pytest.mark.parametrize("stage", STAGES)
def test_what_a_kill_leaves_is_removed_by_the_next_run_in_that_folder(tmp_path, stage):
    zoo_left, runs_left, checkpoint_left, then = STAGES[stage]
    if stage == "zoo-rm":
        assert run(*train(tmp_path)).returncode == 0
        killed = run("zoo", "rm", "k", "--yes", "--zoo", str(tmp_path / "zoo"), kill_at=stage)
    else:
        killed = run(*train(tmp_path), kill_at=stage)
    assert killed.returncode == -9, killed.stderr
    zoo, runs, checkpoint = tmp_path / "zoo", tmp_path / "runs", tmp_path / "runs" / "k.checkpoint"
    assert matches(names(zoo), pattern(*zoo_left)), names(zoo)
    assert matches(names(runs), pattern(*runs_left)), names(runs)
    if checkpoint_left is not None:
        assert matches(names(checkpoint), pattern(*checkpoint_left)), names(checkpoint)
    # the next run touching those folders: the same run resumed, or another run
    done = run(*(train(tmp_path, "k", "--resume") if then == "resume" else train(tmp_path, "other")))
    assert done.returncode == 0, done.stderr
    kept_zoo = ["other"] + (["k"] if stage in ("checkpoint-clear",) else [])
    assert names(zoo) == sorted(["k"] if then == "resume" else kept_zoo)
    # a resumable checkpoint is not a leftover: it stays until its run is resumed
    assert names(runs) == (["k.checkpoint"] if stage in ("final-save", "training") else [])
    if stage in ("final-save", "training"):
        assert names(checkpoint) == [checkpoint_left[0]]
    for entry in names(zoo):
        read_manifest(zoo / entry)  # complete, every hash verified
