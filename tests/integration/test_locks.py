"""One process per run and per grid folder: a second `train` of the same run (same zoo entry or same
RUNS_DIR), a second grid on the same folder, or a `train` of a zoo entry a grid cell is training, is refused
at once (one line naming the run and the holder's PID, exit 2, nothing written), and the lock goes with its
holder, however it dies."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepstone import artifacts, locks, pipelines
from stepstone.errors import StepstoneError
from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, load_records, run_grid
from stepstone.composition import parse
from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec
from stepstone.zoo import Zoo

TRAIN = TrainSpec(epochs=1, batch_size=8, max_train_examples=16, max_eval_examples=8, lr=5e-3)
ME = os.getpid()


def spec(name: str = "r", compose: str | None = None) -> RunSpec:
    return RunSpec(task=["toy-sentiment"], name=name, method=MethodSpec(kind="bottleneck"),
                   backbone=BackboneSpec("tiny"), train=TRAIN, compose=parse(compose) if compose else None)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refusal(run: str, lock: Path) -> str:
    return f"run '{run}' is already being trained by process {ME} ({lock} is locked): wait for it to finish, or " \
           f"stop it first"


def test_a_run_whose_zoo_entry_is_locked_is_refused_and_writes_nothing(tmp_path):
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    with locks.exclusive([zoo.root / "r"], "held"):
        before = tree(tmp_path)
        with pytest.raises(StepstoneError) as caught:
            pipelines.train_run(spec(), zoo=zoo, runs_dir=runs)
        assert str(caught.value) == refusal("r", zoo.root / ".r.lock")
        assert tree(tmp_path) == before == ["zoo", "zoo/.r.lock"]
    assert tree(tmp_path) == []  # the holder's lock file and the folder it made are gone with it


def test_the_same_name_in_another_zoo_but_the_same_runs_dir_is_refused(tmp_path):
    """Both would write and rotate RUNS_DIR/r.checkpoint."""
    runs = tmp_path / "runs"
    with locks.exclusive([runs / "r"], "held"):
        with pytest.raises(StepstoneError) as caught:
            pipelines.train_run(spec(), zoo=Zoo(tmp_path / "other-zoo"), runs_dir=runs)
        assert str(caught.value) == refusal("r", runs / ".r.lock")
        assert tree(tmp_path) == ["runs", "runs/.r.lock"]


def test_a_composed_run_has_one_lock_in_runs_dir(tmp_path):
    zoo, runs = Zoo(tmp_path / "zoo"), tmp_path / "runs"
    pipelines.train_run(spec("m"), zoo=zoo, runs_dir=runs)
    with locks.exclusive([runs / "t"], "held"):
        with pytest.raises(StepstoneError) as caught:
            pipelines.train_run(spec("t", "Stack(m)"), zoo=zoo, runs_dir=runs)
        assert str(caught.value) == refusal("t", runs / ".t.lock")
    outcome = pipelines.train_run(spec("t", "Stack(m)"), zoo=zoo, runs_dir=runs)
    assert outcome.path == runs / "t" and sorted(p.name for p in runs.iterdir()) == ["t"]


def test_a_grid_folder_in_use_is_refused_and_writes_nothing(tmp_path):
    grid = GridSpec(intermediate=("toy-sentiment",), targets=(TargetSpec("toy-tags"),), preset=Preset.TINY,
                    seeds=(0,), methods=("bottleneck",), setups=(Setup.NONE,), full_finetune=False)
    with locks.exclusive([tmp_path / "g"], "held"):
        with pytest.raises(StepstoneError) as caught:
            run_grid(grid, tmp_path / "g", isolate=False)
        assert str(caught.value) == (f"grid folder '{tmp_path / 'g'}' is already being run by process {ME} "
                                     f"({tmp_path / '.g.lock'} is locked): wait for it to finish, or stop it first")
        assert tree(tmp_path) == [".g.lock"]


def test_a_grid_cell_whose_zoo_entry_another_process_trains_fails_and_the_grid_goes_on(tmp_path):
    grid = GridSpec(intermediate=("toy-sentiment",), targets=(TargetSpec("toy-tags", langs=("en",)),),
                    preset=Preset.TINY, seeds=(0,), methods=("bottleneck",), setups=(Setup.NONE,),
                    full_finetune=False)
    folder = tmp_path / "g"
    entry = folder / "zoo" / "toy-tags-bottleneck-none-s0"
    with locks.exclusive([entry], "held"):
        result = run_grid(grid, folder, isolate=False)
    record = load_records(folder / CELLS)["target/toy-tags/bottleneck/none/seed0"]
    assert result.failed == ["target/toy-tags/bottleneck/none/seed0"]
    lock = entry.with_name(f".{entry.name}.lock")
    assert record["error"] == "StepstoneError: " + refusal("toy-tags-bottleneck-none-s0", lock)
    assert run_grid(grid, folder, isolate=False).failed == []  # retried once the lock is free


def test_a_filesystem_that_cannot_lock_warns_and_trains(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match=r"\.r\.lock: this filesystem cannot lock files \(No locks available\): two "
                                         r"runs of the same name here are not refused"):
        outcome = pipelines.train_run(spec(), zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs")
    assert outcome.path.name == "r" and tree(tmp_path / "zoo")[0] == "r"


def test_a_lock_that_cannot_be_opened_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "zoo" / ".r.lock").mkdir(parents=True)  # a folder where the lock file goes
    with pytest.raises(StepstoneError) as caught:
        pipelines.train_run(spec(), zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs")
    assert str(caught.value) == f"cannot lock '{tmp_path / 'zoo' / '.r.lock'}': Is a directory (EISDIR)"
    assert tree(tmp_path) == ["zoo", "zoo/.r.lock"]


def test_a_lock_file_removed_between_open_and_lock_is_not_trusted(tmp_path, monkeypatch):
    """The sweep of stale lock files removes a file while a starting run may have it open: that run must not
    hold a lock on a file nobody else can find."""
    import fcntl

    path, flock, removed = tmp_path / ".x.lock", fcntl.flock, []

    def flock_after_a_sweep(fd, operation):
        if not removed:  # another process removes the (stale) file just before this one locks it
            removed.append(path.stat().st_ino)
            path.unlink()
        return flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_sweep)
    fd = locks.try_lock(path)
    assert fd is not None and os.fstat(fd).st_ino == path.stat().st_ino
    assert path.read_text() == f"{ME}@{artifacts._HOST}\n"
    locks.release(path, fd)
    assert not path.exists()


# ------------------------------------------------------------------------------- real processes
ENV = {**os.environ, "STEPSTONE_THREADS": "1"}
CLI = [sys.executable, "-m", "stepstone_cli.main"]
LONG = ["train.epochs=200", "train.batch_size=2", "train.max_train_examples=100", "train.max_eval_examples=8",
        "train.threads=1", "train.dev=false", "train.select_best=false", "--checkpoint-every", "50", "-q"]


def wait_for_lock(path: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        if path.is_file() and path.read_text().startswith(f"{process.pid}@"):
            return
        time.sleep(0.01)
    raise AssertionError(f"no lock {path} from {process.pid}: {process.stderr.read() if process.stderr else ''}")


def wait_for_checkpoint(folder: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    """Until `process` has saved a checkpoint (its training has begun): a stop before that saves none."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline and not any(folder.glob("step-*")):
        time.sleep(0.05)


def refused_quickly(command: list[str], holder: subprocess.Popen) -> tuple[str, float]:
    start = time.monotonic()
    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    assert holder.poll() is None, "the first process ended: the second was not refused while it held the lock"
    assert second.returncode == 2 and second.stdout == "", second.stderr
    lines = second.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    return lines[0], took


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err


def test_two_train_processes_of_the_same_run(tmp_path):
    args = ["train", "--task", "toy-tags", "--backbone", "tiny", "--name", "k", "--zoo", str(tmp_path / "zoo"),
            "--runs-dir", str(tmp_path / "runs"), *LONG]
    first = subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "zoo" / ".k.lock"
        wait_for_lock(lock, first)
        line, took = refused_quickly([*CLI, *args], first)
        assert line == (f"error: run 'k' is already being trained by process {first.pid} ({lock} is locked): wait "
                        f"for it to finish, or stop it first")
        assert took < 60, took  # at start-up (imports included), not after training
        # the same name into another zoo, with the same runs dir (its checkpoint folder): refused too
        other = [a if a != str(tmp_path / "zoo") else str(tmp_path / "zoo2") for a in args]
        line, _ = refused_quickly([*CLI, *other], first)
        assert line.startswith(f"error: run 'k' is already being trained by process {first.pid} "
                               f"({tmp_path / 'runs' / '.k.lock'} is locked)")
        assert not (tmp_path / "zoo2").exists()
        wait_for_checkpoint(tmp_path / "runs" / "k.checkpoint", first)  # stopped in training, not while it loads
    finally:
        stop(first)
    assert not (tmp_path / "zoo").exists()  # the holder released and removed its lock files on the way out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["k.checkpoint"]


def test_a_killed_holder_releases_the_lock(tmp_path):
    args = ["train", "--task", "toy-tags", "--backbone", "tiny", "--name", "k", "--zoo", str(tmp_path / "zoo"),
            "--runs-dir", str(tmp_path / "runs"), *LONG]
    first = subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_lock(tmp_path / "zoo" / ".k.lock", first)
    first.kill()
    first.communicate()
    assert (tmp_path / "zoo" / ".k.lock").is_file()  # left behind, but no longer locked
    short = [a for a in args if not a.startswith("train.epochs")] + ["train.epochs=1", "--checkpoint-every", "0"]
    done = subprocess.run([*CLI, *short], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["k"]  # the stale lock file is gone


GRID = ("preset: tiny\nintermediate: [toy-sentiment]\nseeds: [0]\nmethods: [bottleneck]\nsetups: [stack]\n"
        "full_finetune: false\ntargets:\n  - {task: toy-tags, langs: [en]}\n"
        "train: {max_train_examples: 100, batch_size: 2, epochs: 200, checkpoint_every: 50}\n")


def test_a_second_grid_on_the_folder_and_a_train_of_the_cell_in_progress_are_refused(tmp_path):
    (tmp_path / "g.yaml").write_text(GRID)
    folder = tmp_path / "g"
    grid = [*CLI, "grid", str(tmp_path / "g.yaml"), "--out", str(folder), "-q"]
    first = subprocess.Popen(grid, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(tmp_path / ".g.lock", first)
        line, took = refused_quickly(grid, first)
        assert line == (f"error: grid folder '{folder}' is already being run by process {first.pid} "
                        f"({tmp_path / '.g.lock'} is locked): wait for it to finish, or stop it first")
        assert took < 60, took
        # the cell trains zoo entry bottleneck-toy-sentiment in its own process (isolated): find its PID
        cell_lock = folder / "zoo" / ".bottleneck-toy-sentiment.lock"
        deadline = time.monotonic() + 300
        while not cell_lock.is_file() and time.monotonic() < deadline:
            time.sleep(0.01)
        cell = locks.holder(cell_lock)
        assert cell is not None and cell[0] != first.pid
        train = [*CLI, "train", "--task", "toy-sentiment", "--backbone", "tiny", "--name", "bottleneck-toy-sentiment",
                 "--zoo", str(folder / "zoo"), "--runs-dir", str(tmp_path / "runs"), "-q"]
        line, _ = refused_quickly(train, first)
        assert line == (f"error: run 'bottleneck-toy-sentiment' is already being trained by process {cell[0]} "
                        f"({cell_lock} is locked): wait for it to finish, or stop it first")
    finally:
        stop(first)
    assert not (tmp_path / ".g.lock").exists() and not cell_lock.exists()
