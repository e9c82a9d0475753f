"""The zoo never holds a half-written entry: saves killed (SIGKILL) at every stage leave nothing that
reads as an entry, and two processes saving the same name end with one intact entry and one clear error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepstone.artifacts import atomic_dir, write_text_atomic
from stepstone.manifest import read_manifest
from stepstone.errors import StepstoneError
from stepstone.zoo import Zoo

TRAIN = ["train", "--task", "toy-sentiment", "--backbone", "tiny", "--name", "same", "-q", "train.epochs=1",
         "train.max_train_examples=16", "train.max_eval_examples=8", "train.batch_size=8", "train.threads=1"]

# Runs `stepstone train` with one library call patched to SIGKILL the process at a chosen stage of the save.
KILLER = textwrap.dedent("""
    import os, signal, sys
    stage, zoo = sys.argv[1], sys.argv[2]
    import stepstone.manifest as manifest, stepstone.methods as methods, stepstone.pipelines.train as train_steps

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def after(function):
        def wrapped(*args, **kwargs):
            function(*args, **kwargs)
            die()
        return wrapped

    if stage == "weights-half-written":  # the adapter file cut off in the middle
        save = methods.save_adapter

        def half(model, directory, name, with_head):
            save(model, directory, name, with_head)
            weights = directory / "adapter.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
            die()

        methods.save_adapter = half
    elif stage == "weights-written":
        methods.save_adapter = after(methods.save_adapter)
    elif stage == "manifest-written":
        train_steps.write_manifest = after(manifest.write_manifest)
    elif stage == "before-rename":
        real = os.rename
        os.rename = lambda src, dst: die() if str(dst).endswith("same") else real(src, dst)
    from stepstone_cli.main import app
    app(sys.argv[3:] + ["--zoo", zoo])
""")

# Runs `stepstone train` and, just before its final rename, waits until the other process is there too.
# Without the run lock, which refuses the second process at once (tests/integration/test_locks.py): this
# tests the rename race behind it (a zoo entry saved by something else, a filesystem without flock).
RACER = textwrap.dedent("""
    import contextlib, os, sys, time
    from pathlib import Path
    import stepstone.locks
    stepstone.locks.exclusive = lambda targets, what: contextlib.nullcontext()
    meeting = Path(sys.argv[1])
    real = os.rename

    def rename(src, dst):
        if str(dst).endswith("same"):
            (meeting / f"ready-{os.getpid()}").touch()
            while len(list(meeting.glob("ready-*"))) < 2:
                time.sleep(0.01)
        return real(src, dst)

    os.rename = rename
    from stepstone_cli.main import app
    app(sys.argv[2:])
""")


def python(script: str, *args: str, wait: bool = True, cwd: Path | None = None):
    env = {**os.environ, "STEPSTONE_THREADS": "1"}
    command = [sys.executable, "-c", script, *map(str, args)]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


@pytest.mark.parametrize("stage", ["weights-half-written", "weights-written", "manifest-written", "before-rename"])
def test_a_save_killed_at_any_stage_leaves_no_entry(tmp_path, stage):
    zoo = Zoo(tmp_path / "zoo")
    killed = python(KILLER, stage, zoo.root, *TRAIN, cwd=tmp_path)  # its default runs/ (and lock) under tmp_path
    assert killed.returncode == -9, killed.stderr
    # the killed run's lock file: released by its death (a flock), removed by the next run (below)
    assert (zoo.root / ".same.lock").is_file()
    leftovers = [p.name for p in zoo.root.iterdir() if p.name != ".same.lock"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".same.tmp-")  # the unfinished save, hidden
    assert zoo.names() == [] and not zoo.path("same").exists()
    with pytest.raises(StepstoneError, match="no zoo entry 'same'"):
        zoo.get("same")
    # the same save again succeeds, and clears what the killed process left
    again = python("from stepstone_cli.main import app; import sys; app(sys.argv[1:])", *TRAIN, "--zoo", zoo.root,
                   cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [p.name for p in zoo.root.iterdir()] == ["same"]
    assert read_manifest(zoo.path("same"))["name"] == "same"  # hashes verified


def test_two_processes_saving_the_same_name(tmp_path):
    zoo = tmp_path / "zoo"
    racers = [python(RACER, tmp_path, *TRAIN, "--zoo", zoo, f"train.seed={seed}", wait=False) for seed in (1, 2)]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
    loser = results[1 - winner]
    assert loser[2].strip() == f"error: '{zoo / 'same'}' was created by another process while this one was saving"
    manifest = read_manifest(zoo / "same")  # intact: every hash checks out
    assert manifest["seed"] == (1, 2)[winner]
    assert sorted(p.name for p in zoo.iterdir()) == ["same"]  # the loser cleaned up after itself


def test_atomic_dir_race_in_process(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(StepstoneError, match="was created by another process while this one was saving"):
        with atomic_dir(final) as first:
            (first / "a.json").write_text(json.dumps({"who": "first"}))
            with atomic_dir(final) as second:  # starts after the first, finishes before it
                (second / "a.json").write_text(json.dumps({"who": "second"}))
    assert json.loads((final / "a.json").read_text()) == {"who": "second"}
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_orphaned_temporary_folders_of_live_processes_are_kept(tmp_path):
    from stepstone import artifacts

    final = tmp_path / "entry"
    live = tmp_path / f".entry.tmp-{artifacts._HOST}-{os.getpid()}-abc"
    dead = tmp_path / f".entry.tmp-{artifacts._HOST}-999999999-abc"  # beyond pid_max: no such process
    other = tmp_path / ".other.tmp-x-1-abc"
    for folder in (live, dead, other):
        folder.mkdir()
    with atomic_dir(final):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["entry", live.name, other.name])


def test_saved_folders_and_files_are_readable_by_others(tmp_path):
    """A zoo is shared: the saved folder is 0755 (not mkdtemp's 0700), written files 0644."""
    final = tmp_path / "zoo" / "entry"
    with atomic_dir(final) as tmp:
        write_text_atomic(tmp / "notes.json", "{}")
    assert (final.stat().st_mode & 0o777, (final / "notes.json").stat().st_mode & 0o777) == (0o755, 0o644)
