"""Self-describing artifacts: safetensors weights + a JSON manifest, written atomically.

Every artifact is a folder. It is assembled in a temporary sibling folder and renamed into place in
one step, so readers never see a half-written artifact and a crash leaves only a `.NAME.tmp-*`
folder behind; a filesystem fault during the save (disk full, read-only, no permission) removes the
temporary folder and becomes one StepstoneError line. The manifest records what ran next to what it
produced and the sha256 of every file of the artifact (weights and configs), which loading verifies.
This module keeps the file-level helpers (atomic writes, hashing, JSON, the walk that refuses links); the
manifest itself (typed records, reading, writing, the folder layout) lives in `stepstone.manifest`.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import StepstoneError

MANIFEST = "manifest.json"
_LIBRARIES = ("torch", "transformers", "adapters", "peft", "datasets", "safetensors", "accelerate")


class SaveError(StepstoneError):
    """A save failed on the filesystem (disk full, quota, read-only, permission); nothing was saved."""


def library_versions() -> dict[str, str]:
    versions = {"stepstone": __version__}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on success rename it to `final` in one step.

    Refuses an existing `final`. If another process wins the race for the same name, the rename fails
    and this one reports it; the winner's folder is left intact. The temporary folder is named
    `.NAME.tmp-HOST-PID-*`: what a killed save left behind (its process gone) is removed by the next save
    into the same folder (`remove_leftovers`), and never looks like an artifact to readers. A filesystem fault
    while saving (disk full, quota, read-only, permission, a file where a folder should be) removes the
    temporary folder and raises one StepstoneError that names `final` and the fault."""
    if final.exists() or final.is_symlink():
        raise StepstoneError(f"'{final}' already exists; pick another name or remove it first")
    tmp, made = None, [f for f in (final.parent, *final.parent.parents) if not os.path.lexists(f)]
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{_HOST}-{os.getpid()}-", dir=final.parent))
        os.chmod(tmp, 0o755)  # mkdtemp's own 0700 would make a saved zoo entry unreadable to the rest of a team
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR) and \
                    (final.exists() or final.is_symlink()):
                raise StepstoneError(f"'{final}' was created by another process while this one was saving") from None
            raise
    except Exception as err:
        fault = filesystem_fault(err)
        if fault is None:
            raise
        raise SaveError(f"could not save '{final}': {fault}; nothing was saved") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():  # a failed save also takes back the folders it made (nothing written)
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break


def filesystem_fault(err: BaseException) -> str | None:
    """'No space left on device (ENOSPC)' for an OSError, a copytree that met one (shutil.Error), or a
    safetensors write that failed on one (it reports the OS error in its own exception type); None for
    anything else, which stays a bug."""
    if isinstance(err, shutil.Error):  # copytree collects its errors: (src, dst, "[Errno 28] ...") each
        first = err.args[0][0] if err.args and isinstance(err.args[0], list) and err.args[0] else None
        found = re.search(r"\[Errno (\d+)\]", str(first[-1])) if first else None
        return describe_errno(int(found.group(1))) if found else None
    if isinstance(err, OSError) and err.errno is not None:
        return describe_errno(err.errno, err.strerror)
    if type(err).__name__ == "SafetensorError":
        found = re.search(r"I/O error: .*?\(os error (\d+)\)", str(err))
        if found:
            return describe_errno(int(found.group(1)))
    return None


def describe_errno(code: int, text: str | None = None) -> str:
    return f"{text or os.strerror(code)} ({errno.errorcode.get(code, code)})"


def check_destination(target: Path, verb: str = "save") -> None:
    """Before any work: refuse a destination that cannot be written, so a long training or evaluation
    never fails at its very end. `target` is the file or folder about to be created (its folders may not
    exist yet): no existing ancestor may be a file, `target` may not be an existing folder when it is a
    file to write (verb "write"), and the nearest existing folder must accept a new file. That is probed
    by creating and removing a hidden file, since permission bits do not stop root but a read-only mount
    does. Nothing is left behind (no folder is created)."""
    target = Path(target)
    if verb == "write" and target.is_dir():
        raise StepstoneError(f"cannot write '{target}': it is a folder, not a file")
    for folder in (target.parent, *target.parent.parents):
        if not os.path.lexists(folder):
            continue
        if not folder.is_dir():
            raise StepstoneError(f"cannot {verb} '{target}': '{folder}' is a file, not a folder")
        try:
            handle, probe = tempfile.mkstemp(prefix=".stepstone-write-test-", dir=folder)
        except OSError as err:
            raise StepstoneError(f"cannot {verb} '{target}': '{folder}' is not writable: "
                                 f"{describe_errno(err.errno, err.strerror)}") from None
        os.close(handle)
        os.unlink(probe)
        return


_HOST = socket.gethostname().replace("-", "_") or "host"


# What a killed process can leave in a folder, each named after its process: `.NAME.tmp-HOST-PID-*` (an
# atomic_dir folder or a write_bytes_atomic file), `.NAME.deleting-HOST-PID` (a folder renamed away to be
# deleted: checkpoint rotation, the checkpoint folder once the run is saved, `zoo rm`; older versions wrote
# `.NAME.deleting-PID`), and `.NAME.lock` (see locks.py; no PID in the name: free once its holder is gone).
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:tmp-(?P<host>[^-]+)-(?P<pid>\d+)-.*"
                       r"|deleting-(?:(?P<dhost>[^-]+)-)?(?P<dpid>\d+))", re.DOTALL)


def remove_leftovers(folder: Path, name: str | None = None) -> list[str]:
    """Remove what killed processes of this host left in `folder` (only the leftovers of `name` when given):
    never anything of a live process, nor of another host (whose processes cannot be checked). Returns the
    names removed. Every writer calls it on the folder it writes to, so a leftover lasts until the next run
    that touches the folder."""
    from .locks import SUFFIX as LOCK, holder, remove_if_stale

    try:
        entries = sorted(os.listdir(folder))
    except OSError:  # no folder (yet), or unreadable: nothing of ours to clean
        return []
    removed = []
    for entry in entries:
        path = Path(folder) / entry
        if name is not None and not entry.startswith(f".{name}."):
            continue
        if entry.startswith(".") and entry.endswith(LOCK) and len(entry) > len(LOCK) + 1:
            if holder(path) is not None and remove_if_stale(path):  # ours (PID@HOST inside), and free
                removed.append(entry)
            continue
        found = _LEFTOVER.fullmatch(entry)
        if found is None or (name is not None and found["name"] != name):
            continue
        host = found["host"] or found["dhost"] or _HOST
        pid = int(found["pid"] or found["dpid"])
        if host != _HOST or _alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def remove_tree(path: Path) -> None:
    """Delete a folder so that a kill at any moment leaves no half folder under its name: renamed first to
    `.NAME.deleting-HOST-PID` (which `remove_leftovers` clears if the kill comes during the deletion)."""
    trash = path.with_name(f".{path.name}.deleting-{_HOST}-{os.getpid()}")
    os.rename(path, trash)
    # The name is free once renamed: what cannot be deleted now (e.g. NFS's .nfs* file of a file still open) is a
    # leftover like a killed deletion's, not a failure of the save or `zoo rm` that called this.
    shutil.rmtree(trash, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary sibling + os.replace (readers see the old or the new file).
    The file gets the usual 0644 mode (mkstemp's own is 0600). A filesystem fault removes the temporary
    file and raises one StepstoneError naming `path`."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path.parent, path.name)  # only this file's: the folder may be anyone's
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_HOST}-{os.getpid()}-", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        raise SaveError(f"could not write '{path}': {describe_errno(err.errno, err.strerror)}; "
                        f"nothing was written") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def append_line(path: Path, line: str) -> None:
    """Append `line` to `path` and fsync it. A filesystem fault (disk full ...) cuts the file back to what it
    was, so no half line is left for the next append to run into, and raises one SaveError naming `path`."""
    size = path.stat().st_size if path.exists() else 0
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        try:
            os.truncate(path, size)
        except OSError:
            pass
        raise SaveError(f"could not write '{path}': {describe_errno(err.errno, err.strerror)}; nothing was "
                        f"written") from None


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# What `stepstone evaluate` writes into an artifact after it was saved (RUN/evaluations/...): outputs, not
# part of the artifact, so neither hashed nor refused as unlisted.
OUTPUTS = "evaluations"
# Unlisted files of these kinds are refused: loaders read weights and configs, and one that the manifest
# does not list cannot be verified. Other unlisted files (notes, .DS_Store) are never read, so they are let be.
READ_SUFFIXES = (".safetensors", ".json", ".jsonl", ".yaml", ".yml")


def _is_output(relative: str) -> bool:
    """evaluations/ of the artifact, or of a member copy inside a run (members/M/evaluations/)."""
    from .manifest import ArtifactLayout  # the layout's home (it builds on this module)

    parts = Path(relative).parts
    return parts[0] == OUTPUTS or (len(parts) > 3 and parts[0] == ArtifactLayout.MEMBERS and parts[2] == OUTPUTS)


def _walk(folder: Path) -> list[str]:
    """Relative paths of every regular file under `folder`, sorted. Refuses symbolic links anywhere in the
    folder (stepstone writes none; a link can point outside the artifact, so that loading reads, and
    `evaluate` writes, outside it, or be re-pointed after its target was hashed; copies of the artifact
    would follow it) and anything that is not a file or a folder (a FIFO would hang the hashing)."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            relative = str(path.relative_to(folder))
            if path.is_symlink():
                raise StepstoneError(f"'{folder}': {relative} is a symbolic link (to '{os.readlink(path)}'); "
                                     f"an artifact holds only real files and folders: copy the target in instead")
            if name in files:
                if not path.is_file():
                    raise StepstoneError(f"'{folder}': {relative} is not a regular file")
                found.append(relative)
    return sorted(found)


def check_tree(folder: Path) -> None:
    """Refuse symbolic links and special files in `folder` (see `_walk`) without hashing anything."""
    _walk(folder)


def artifact_files(folder: Path) -> list[str]:
    """Relative paths of every file that makes up the artifact in `folder` (sorted): all regular files
    but manifest.json itself and evaluation outputs; refuses links and special files (see `_walk`)."""
    return [f for f in _walk(folder) if f != MANIFEST and not _is_output(f)]


# Formats that unpickle on load (torch.save / pickle / joblib): stepstone never writes them and never reads
# a folder that holds one, so a shared adapter cannot smuggle code in through a library's fallback loader.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def read_json(path: Path) -> Any:
    """The JSON in `path`; a missing file, or one that is not valid JSON (or not UTF-8), is one error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StepstoneError(f"'{path}' is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StepstoneError(f"{path}: not valid JSON ({err})") from None
