"""One process at a time per run (and per grid folder): a lock taken before any work, refused at once.

Why fcntl.flock on a lock file next to what is protected, rather than a PID file checked for a live PID:
the OS drops a flock when its holder dies, however it dies (SIGKILL, the OOM killer; on NFS, where flock
becomes a byte-range lock on the server, when the dead client's lease expires), so a stale lock never
refuses a run; two processes starting at the same instant cannot both win (a PID file needs a
check-then-create that two processes can interleave); and a dead run's PID reused by another process
keeps no lock alive. It works across hosts sharing the folder, where a PID cannot be checked. The PID
written into the file only names the holder in the refusal.

The file, `.NAME.lock`, is removed by its holder on release; one left by a killed holder is removed by
the next run that touches the folder (`artifacts.remove_leftovers`). Removing a lock file is safe with
the usual protocol: a process that locked a file checks that the path still names that file, and starts
over when someone removed it in between.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from .errors import StepstoneError

SUFFIX = ".lock"
_SETTLE_SECONDS = 1.0  # a lock held by no live process (a stale-file sweep in between): how long to retry


def lock_path(target: Path) -> Path:
    """The lock file of `target` (a run's destination, checkpoint folder or a grid folder): `.NAME.lock` next
    to it."""
    return target.with_name(f".{target.name}{SUFFIX}")


def holder(path: Path) -> tuple[int, str] | None:
    """(PID, host) written into a lock file; None when it holds none (being written, or not a lock)."""
    try:
        pid, _, host = path.read_text(encoding="utf-8").strip().partition("@")
    except (OSError, UnicodeDecodeError):
        return None
    return (int(pid), host) if pid.isascii() and pid.isdigit() else None  # int() refuses some digits, e.g. "²"


def describe(path: Path) -> str:
    from .artifacts import _HOST

    found = holder(path)
    if found is None:
        return "another process"
    pid, host = found
    return f"process {pid}" + ("" if host in ("", _HOST) else f" on host {host}")


def _held_by_live_process(path: Path) -> bool:
    from .artifacts import _HOST, _alive

    found = holder(path)
    return found is not None and (found[1] not in ("", _HOST) or _alive(found[0]))


def _made_dirs(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones created, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
    return missing


UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL)  # e.g. NFS mounted with nolock


def try_lock(path: Path) -> int | None:
    """Lock `path` (created when missing) without waiting: its file descriptor, or None when another open
    file holds it. The file then holds this process's PID@HOST. Where the filesystem cannot lock, the file
    is kept unlocked, with a warning: runs there are protected only by the atomic rename of their save."""
    import warnings

    from .artifacts import _HOST

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in UNSUPPORTED:
                warnings.warn(f"{path}: this filesystem cannot lock files ({err.strerror}): two runs of the same "
                              f"name here are not refused", stacklevel=2)
            else:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    return None
                raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}@{_HOST}\n".encode())
            except OSError:  # e.g. disk full: not held after all
                os.close(fd)
                raise
            return fd
        os.close(fd)  # removed (stale-lock sweep, or its holder releasing) after we opened it: start over


def release(path: Path, fd: int) -> None:
    """Remove the lock file (while still holding it, so no one can take the removed file), then unlock."""
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


@contextmanager
def exclusive(targets: list[Path], what: str) -> Iterator[None]:
    """Hold the locks of `targets` (in order; one lock file per distinct target) for the `with` body, or
    refuse at once: StepstoneError "`what` by process PID (...)", `what` e.g. "run 'x' is already being
    trained". Folders created for the lock files are removed again when empty, so a refused or failed run
    leaves nothing behind."""
    from .artifacts import check_destination, describe_errno

    with ExitStack() as stack:
        for path in dict.fromkeys(lock_path(Path(t)) for t in targets):
            check_destination(path, "lock")  # a file in the way, a read-only place: one line, not a traceback
            created = _made_dirs(path.parent)
            stack.callback(_remove_empty, created)
            try:
                fd, deadline = try_lock(path), time.monotonic() + _SETTLE_SECONDS
                while fd is None and not _held_by_live_process(path) and time.monotonic() < deadline:
                    time.sleep(0.05)  # the PID inside is gone: the file is being swept or just taken; look again
                    fd = try_lock(path)
            except OSError as err:  # what check_destination cannot see: a folder by the lock's name, disk full
                raise StepstoneError(f"cannot lock '{path}': {describe_errno(err.errno, err.strerror)}") from None
            if fd is None:
                raise StepstoneError(f"{what} by {describe(path)} ({path} is locked): wait for it to finish, "
                                     f"or stop it first")
            stack.callback(release, path, fd)
        yield


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): someone else's now
            return


def remove_if_stale(path: Path) -> bool:
    """Remove a lock file no process holds (its holder was killed); True if removed. A run taking the lock
    at the same moment sees it briefly held, by a PID that is gone, and looks again (see `exclusive`)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    release(path, fd)
    return True
