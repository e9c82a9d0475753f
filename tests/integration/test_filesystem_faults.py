"""Filesystem faults: a destination that cannot be written is refused before any work (before a model
loads), and a fault during a save (disk full, quota, read-only, permission ...) leaves nothing behind and
reads as one line naming the path and the fault.

Root is not stopped by permission bits, so read-only folders and full disks are simulated: the OS calls
stepstone writes through (tempfile.mkstemp / mkdtemp, os.mkdir, os.rename, os.replace, a file's write) raise
the OSError the kernel would.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from safetensors import SafetensorError
from safetensors.torch import load_file
from typer.testing import CliRunner

from stepstone import artifacts, methods
from stepstone.pipelines import inference
from stepstone.pipelines import train as train_steps
from stepstone.artifacts import SaveError, atomic_dir, check_destination, write_text_atomic
from stepstone.errors import StepstoneError
from stepstone_cli.main import app

FAST = ("train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16")
READ_ONLY = "Read-only file system (EROFS)"


def run(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            out[os.path.relpath(os.path.join(folder, name), root)] = \
                hashlib.sha256(Path(folder, name).read_bytes()).hexdigest()
    return out


def one_error_line(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: {message}"], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def read_only(monkeypatch, folder: Path) -> None:
    """Make every way stepstone creates, renames or replaces something inside `folder` fail with EROFS."""
    inside = lambda path: path is not None and (Path(path).resolve() == folder.resolve()  # noqa: E731
                                                or folder.resolve() in Path(path).resolve().parents)

    def refuse(real, where):
        def call(*args, **kwargs):
            if any(inside(p) for p in where(*args, **kwargs)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp, lambda *a, dir=None, **k: [dir]))
    monkeypatch.setattr(tempfile, "mkdtemp", refuse(tempfile.mkdtemp, lambda *a, dir=None, **k: [dir]))
    monkeypatch.setattr(os, "mkdir", refuse(os.mkdir, lambda path, *a, **k: [path]))
    monkeypatch.setattr(os, "rename", refuse(os.rename, lambda src, dst, *a, **k: [src, dst]))
    monkeypatch.setattr(os, "replace", refuse(os.replace, lambda src, dst, *a, **k: [src, dst]))


@pytest.fixture(scope="module")
def entry(tmp_path_factory) -> Path:
    """A trained toy-sentiment adapter zoo entry ('sent') to copy into the cases' zoos."""
    zoo = tmp_path_factory.mktemp("trained") / "zoo"
    result = run("train", "--task", "toy-sentiment", "--name", "sent", "--zoo", zoo, "-q", *FAST)
    assert result.exit_code == 0, result.output
    return zoo / "sent"


# ------------------------------------------------------------------------------------ checks before the work
def test_a_file_in_the_way_and_a_folder_for_a_file_are_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StepstoneError) as err:
        check_destination(tmp_path / "f" / "a" / "b")
    assert str(err.value) == f"cannot save '{tmp_path / 'f' / 'a' / 'b'}': '{tmp_path / 'f'}' is a file, not a folder"
    with pytest.raises(StepstoneError) as err:
        check_destination(tmp_path, "write")
    assert str(err.value) == f"cannot write '{tmp_path}': it is a folder, not a file"


def test_the_check_creates_nothing(tmp_path):
    check_destination(tmp_path / "a" / "b" / "c" / "d.json", "write")
    check_destination(tmp_path / "entry")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone, no folder was made


def test_a_read_only_folder_is_found_by_probing(tmp_path, monkeypatch):
    (tmp_path / "ro").mkdir()
    read_only(monkeypatch, tmp_path / "ro")
    with pytest.raises(StepstoneError) as err:
        check_destination(tmp_path / "ro" / "zoo" / "x")  # zoo/ does not exist yet: ro/ is where it would go
    assert str(err.value) == (f"cannot save '{tmp_path / 'ro' / 'zoo' / 'x'}': '{tmp_path / 'ro'}' is not writable: "
                              f"{READ_ONLY}")
    check_destination(tmp_path / "rw" / "x")  # elsewhere is fine


def test_a_read_only_zoo_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zoo").mkdir()
    read_only(monkeypatch, tmp_path / "zoo")
    monkeypatch.setattr(train_steps, "load_backbone", lambda *a: pytest.fail("a model was loaded"))
    monkeypatch.setattr(train_steps, "load_examples", lambda *a: pytest.fail("data was loaded"))
    before = snapshot(tmp_path)
    result = run("train", "--task", "toy-sentiment", "--name", "sent", "--zoo", "zoo", "-q", *FAST)
    one_error_line(result, f"cannot save 'zoo/sent': 'zoo' is not writable: {READ_ONLY}")
    assert snapshot(tmp_path) == before


def grid_cells(root: Path) -> None:
    (root / "ro" / "g").mkdir(parents=True)
    (root / "ro" / "g" / "cells.jsonl").write_text('{"id": "i", "kind": "intermediate", "status": "error"}\n')


def zoo_in_ro(entry_path: Path):
    def setup(root: Path) -> None:
        shutil.copytree(entry_path, root / "ro" / "zoo" / "sent")
    return setup


COMMANDS = {  # command -> (argv, what is set up under ./ro, the expected line)
    "train-adapter": (("train", "--task", "toy-sentiment", "--name", "new", "--zoo", "ro/zoo", "-q", *FAST), None,
                      f"cannot save 'ro/zoo/new': 'ro' is not writable: {READ_ONLY}"),
    "train-run": (("train", "--task", "toy-tags", "--on", "Stack(sent)", "--name", "run", "--zoo", "zoo",
                   "--runs-dir", "ro/runs", "-q", *FAST), "zoo",
                  f"cannot save 'ro/runs/run': 'ro' is not writable: {READ_ONLY}"),
    "evaluate-into-entry": (("evaluate", "sent", "--zoo", "ro/zoo", "-q"), "ro-zoo",
                            f"cannot write 'ro/zoo/sent/evaluations/toy-sentiment.test.json': 'ro/zoo/sent' is not "
                            f"writable: {READ_ONLY}"),
    "evaluate-output": (("evaluate", "sent", "--zoo", "zoo", "--output", "ro/scores.json", "-q"), "zoo",
                        f"cannot write 'ro/scores.json': 'ro' is not writable: {READ_ONLY}"),
    "summary-output": (("summary", "r.json", "--output", "ro/summary.json"), None,
                       f"cannot write 'ro/summary.json': 'ro' is not writable: {READ_ONLY}"),
    "grid": (("grid", "grid.yaml", "--out", "ro/g", "-q"), None,
             f"cannot write 'ro/g/cells.jsonl': 'ro' is not writable: {READ_ONLY}"),
    "report": (("report", "ro/g"), "cells", f"cannot write 'ro/g/report.md': 'ro/g' is not writable: {READ_ONLY}"),
    "export": (("export", "sent", "--out", "ro/peft", "--zoo", "zoo"), "zoo",
               f"cannot save 'ro/peft': 'ro' is not writable: {READ_ONLY}"),
    "import": (("import", "peft", "--name", "x", "--zoo", "ro/zoo"), None,
               f"cannot save 'ro/zoo/x': 'ro' is not writable: {READ_ONLY}"),
    "demo": (("demo", "--out", "ro/demo", "-q"), None, f"cannot save 'ro/demo': 'ro' is not writable: {READ_ONLY}"),
    "zoo-rm": (("zoo", "rm", "sent", "--yes", "--zoo", "ro/zoo"), "ro-zoo",
               f"could not remove 'ro/zoo/sent': {READ_ONLY}; nothing was removed"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_that_writes_refuses_a_read_only_destination_first(entry, tmp_path, monkeypatch, command):
    argv, setup, message = COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir()
    (tmp_path / "r.json").write_text("{}")
    (tmp_path / "grid.yaml").write_text("intermediate: [toy-sentiment]\ntargets: [{task: toy-tags}]\nseeds: [0]\n")
    (tmp_path / "peft").mkdir()
    if setup == "zoo":
        shutil.copytree(entry, tmp_path / "zoo" / "sent")
    elif setup == "ro-zoo":
        zoo_in_ro(entry)(tmp_path)
    elif setup == "cells":
        grid_cells(tmp_path)
    read_only(monkeypatch, tmp_path / "ro")
    monkeypatch.setattr(train_steps, "load_backbone", lambda *a: pytest.fail("a model was loaded"))
    monkeypatch.setattr(inference, "load_backbone", lambda *a: pytest.fail("a model was loaded"))
    before = snapshot(tmp_path)
    one_error_line(run(*argv), message)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------- faults during a save
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENOTDIR, errno.EIO,
                                  errno.EFBIG])
def test_a_fault_during_a_save_leaves_nothing_and_names_the_fault(tmp_path, code):
    final = tmp_path / "zoo" / "entry"
    with pytest.raises(SaveError) as err:
        with atomic_dir(final) as tmp:
            (tmp / "half.safetensors").write_bytes(b"\0" * 100)
            raise OSError(code, os.strerror(code), str(tmp / "half.safetensors"))
    assert str(err.value) == (f"could not save '{final}': {os.strerror(code)} ({errno.errorcode[code]}); "
                              f"nothing was saved")
    assert list(tmp_path.iterdir()) == []  # no temporary folder, no entry, not even the zoo/ it made


def test_a_safetensors_write_that_hit_a_full_disk_is_a_fault_too(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(SaveError, match=r"^could not save '.*entry': No space left on device \(ENOSPC\); nothing "
                                        r"was saved$"):
        with atomic_dir(final):
            raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28) at path '
                                  '"/x/.tmp123"')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bug", [ValueError("a bug"), SafetensorError("Error while serializing: bad dtype"),
                                 KeyError("k")])
def test_other_exceptions_during_a_save_stay_what_they_are(tmp_path, bug):
    with pytest.raises(type(bug)):
        with atomic_dir(tmp_path / "entry"):
            raise bug
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_a_file_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "scores.json"
    write_text_atomic(path, "old\n")
    real = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[:3])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(real(fd, mode, *a, **k)))
    with pytest.raises(SaveError) as err:
        write_text_atomic(path, "new and longer\n")
    assert str(err.value) == f"could not write '{path}': No space left on device (ENOSPC); nothing was written"
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"] and path.read_text() == "old\n"


def half_then_full(real):
    """methods.save_adapter that writes half the weights, then finds the disk full."""
    def save(model, directory, name, with_head):
        real(model, directory, name, with_head)
        weights = Path(directory) / "adapter.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(weights))
    return save


def test_a_full_disk_at_the_final_save_of_train_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(methods, "save_adapter", half_then_full(methods.save_adapter))
    result = run("train", "--task", "toy-sentiment", "--name", "sent", "--zoo", "zoo", "-q", *FAST)
    one_error_line(result, "could not save 'zoo/sent': No space left on device (ENOSPC); nothing was saved; no "
                           "checkpoint was written")
    assert sorted(os.listdir(tmp_path)) == []  # no zoo/, no temporary folder, no runs/


def test_a_full_disk_at_the_final_save_keeps_the_checkpoint_to_resume_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ("train", "--task", "toy-sentiment", "--name", "sent", "--zoo", "zoo", "-q", *FAST,
            "--checkpoint-every", "1")
    with monkeypatch.context() as patch:
        patch.setattr(methods, "save_adapter", half_then_full(methods.save_adapter))
        result = run(*argv)
    one_error_line(result, "could not save 'zoo/sent': No space left on device (ENOSPC); nothing was saved; the "
                           "last good checkpoint (step-0000002) is kept in runs/sent.checkpoint")
    assert not Path("zoo").exists() and os.listdir("runs/sent.checkpoint") == ["step-0000002"]
    # space freed: --resume saves what the interrupted run had trained, exactly as a run that never failed
    assert run(*argv, "--resume").exit_code == 0
    assert run(*argv[:4], "again", *argv[5:]).exit_code == 0
    resumed, clean = load_file("zoo/sent/adapter.safetensors"), load_file("zoo/again/adapter.safetensors")
    assert resumed.keys() == {k.replace("again", "sent") for k in clean}
    assert all(resumed[k].equal(clean[k.replace("sent", "again")]) for k in resumed)
    metrics = [json.loads(Path(f"zoo/{n}/manifest.json").read_text())["metrics"] for n in ("sent", "again")]
    assert metrics[0] == metrics[1]
    assert not Path("runs/sent.checkpoint").exists()


def test_a_full_disk_at_a_checkpoint_stops_training_with_one_line(tmp_path, monkeypatch):
    import safetensors.torch

    monkeypatch.chdir(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.torch, "save_file", full)  # what Checkpoints.save writes with
    result = run("train", "--task", "toy-sentiment", "--name", "sent", "--zoo", "zoo", "-q", *FAST,
                 "--checkpoint-every", "1")
    one_error_line(result, "could not save 'runs/sent.checkpoint/step-0000001': No space left on device (ENOSPC); "
                           "nothing was saved")
    assert os.listdir(tmp_path) == []


def test_a_full_disk_while_evaluate_writes_its_scores(entry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(entry, tmp_path / "zoo" / "sent")
    before = snapshot(tmp_path)
    monkeypatch.setattr(artifacts.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space "
                                                                                           "left on device")))
    result = run("evaluate", "sent", "--zoo", "zoo", "--max-examples", "4", "-q", "--output", "scores.json")
    one_error_line(result, "could not write 'scores.json': No space left on device (ENOSPC); nothing was written")
    assert snapshot(tmp_path) == before


def test_zoo_rm_on_a_read_only_zoo_changes_nothing(entry, tmp_path, monkeypatch):
    from stepstone.zoo import Zoo

    zoo = Zoo(tmp_path / "zoo")
    shutil.copytree(entry, zoo.path("sent"))
    read_only(monkeypatch, zoo.root)
    with pytest.raises(StepstoneError) as err:
        zoo.remove("sent")
    assert str(err.value) == f"could not remove '{zoo.path('sent')}': {READ_ONLY}; nothing was removed"
    monkeypatch.undo()
    assert zoo.get("sent").name == "sent"


def test_zoo_rm_whose_deletion_is_cut_short_removes_the_entry_and_leaves_a_leftover(entry, tmp_path, monkeypatch):
    """Once renamed away the entry is gone; a deletion that fails after that (a file held open on NFS) must not
    report "nothing was removed"."""
    from stepstone.zoo import Zoo

    zoo = Zoo(tmp_path / "zoo")
    shutil.copytree(entry, zoo.path("sent"))
    monkeypatch.setattr(os, "rmdir", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EBUSY, "Busy")))
    assert zoo.remove("sent").path == zoo.path("sent")
    monkeypatch.undo()
    assert zoo.names() == []
    assert os.listdir(zoo.root) == [f".sent.deleting-{artifacts._HOST}-{os.getpid()}"]


def test_a_full_disk_while_appending_a_cell_record_leaves_no_half_line(tmp_path, monkeypatch):
    from stepstone.artifacts import append_line

    log = tmp_path / "cells.jsonl"
    append_line(log, '{"id": "a"}\n')
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SaveError) as err:
        append_line(log, '{"id": "b", "long": "' + "x" * 1000 + '"}\n')
    assert str(err.value) == f"could not write '{log}': No space left on device (ENOSPC); nothing was written"
    monkeypatch.setattr(os, "fsync", real)
    assert log.read_text() == '{"id": "a"}\n'
    append_line(log, '{"id": "c"}\n')
    assert log.read_text().splitlines() == ['{"id": "a"}', '{"id": "c"}']


def test_a_full_disk_while_copying_a_member_is_a_fault_too(tmp_path):
    """copytree (a run's member copies) gathers its errors into one shutil.Error."""
    (tmp_path / "member").mkdir()
    (tmp_path / "member" / "adapter.safetensors").write_bytes(b"\0" * 10)

    def full(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)

    final = tmp_path / "runs" / "run"
    with pytest.raises(SaveError) as err:
        with atomic_dir(final) as tmp:
            shutil.copytree(tmp_path / "member", tmp / "members" / "m", copy_function=full)
    assert str(err.value) == f"could not save '{final}': No space left on device (ENOSPC); nothing was saved"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member"]
