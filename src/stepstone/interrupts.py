"""Stopping on SIGINT / SIGTERM without losing work or leaving anything half-written.

Library code installs its handlers only for the duration of a call and puts the previous ones back.
Inside `stopping()` a signal raises `Interrupted` at once, so `with` blocks remove temporary folders and
locks on the way out (SIGTERM's default action would kill the process on the spot and leave them).
Inside `deferred()` a signal is only recorded: the training loop checks `received()` at its next safe
point (after the optimizer step in progress), saves a checkpoint there and raises `Interrupted` itself.
Once a signal has been received, later ones are ignored until the outermost context ends, so a second
Ctrl-C cannot cut the checkpoint (or the clean-up) short. Outside the main thread nothing is installed:
Python delivers signals to the main thread only.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run stopped on a signal. A BaseException, like KeyboardInterrupt, so `except Exception` (a grid
    cell's error record) does not swallow it. `str(err)` is one line, "interrupted (SIGINT) " + `detail`
    (where it stopped and what was saved); `resumable`: a checkpoint is kept, so the same command with
    `--resume` continues; `primary`: False in the other processes of a multi-process run (they print
    nothing); `exit_code`: 130 for SIGINT, 143 for SIGTERM (128 + the signal, as a shell reports it)."""

    def __init__(self, signum: int, detail: str | None = None, resumable: bool = False, primary: bool = True):
        self.signum, self.detail, self.resumable, self.primary = signum, detail, resumable, primary
        super().__init__(f"interrupted ({signal.Signals(signum).name})" + (f" {detail}" if detail else ""))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    depth = 0  # nested contexts of this process
    received: int | None = None  # the first signal since the outermost context began


def _reset() -> None:  # a forked child (a grid cell) starts with no signal received
    _State.depth, _State.received = 0, None


os.register_at_fork(after_in_child=_reset)


def received() -> int | None:
    """The first signal received inside the outermost `stopping()` / `deferred()` (None: none yet)."""
    return _State.received


@contextmanager
def _handled(at_once: bool, then: Callable[[int], None] | None = None) -> Iterator[None]:
    def handler(signum: int, frame) -> None:
        if _State.received is not None:  # stopping has begun: do not cut it short
            return
        _State.received = signum
        if then is not None:
            then(signum)
        if at_once:
            raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.depth += 1
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        if at_once and _State.received is not None:  # received before (e.g. just after a fork): stop now
            raise Interrupted(_State.received)
        yield
    finally:
        for s, h in previous.items():  # None: a handler not set from Python, which cannot be put back
            signal.signal(s, signal.SIG_DFL if h is None else h)
        _State.depth -= 1
        if _State.depth == 0:
            _State.received = None


def stopping() -> ContextManager[None]:
    """SIGINT / SIGTERM raise `Interrupted` at once (the first one; later ones are ignored)."""
    return _handled(at_once=True)


def deferred(then: Callable[[int], None] | None = None) -> ContextManager[None]:
    """SIGINT / SIGTERM are only recorded for `received()` (and the first passed to `then`, e.g. to
    forward it to a child process); nothing is raised."""
    return _handled(at_once=False, then=then)
