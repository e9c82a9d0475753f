"""Progress reporting without tying the library to a UI: library code asks a `ProgressFactory` for a
bar (`progress("evaluate udpos [de]", n_rows)`, then `bar.advance(k)`) or, for a phase without steps
(loading a model), a status (`progress("load backbone X", None)`). A factory may also take one-off
lines (`note`, e.g. the grid's "cell k of n"). The CLI passes `RichProgress` on a terminal and
`PlainProgress` when stderr is a file or pipe (nohup, a cluster job); tests and library users get
`silent` by default. Descriptions and statuses are shown verbatim: they carry user text (task names,
`[de]`), never markup."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator, Optional, Protocol


class Bar(Protocol):
    def advance(self, steps: int = 1, status: str = "") -> None: ...


# (description, total steps or None for a status without steps) -> a context manager yielding a Bar
ProgressFactory = Callable[[str, Optional[int]], ContextManager[Bar]]


def note(progress: ProgressFactory, line: str) -> None:
    """A one-off progress line through `progress` (nothing when it takes no notes, e.g. `silent`)."""
    take = getattr(progress, "note", None)
    if take is not None:
        take(line)


def duration(seconds: float) -> str:
    """H:MM:SS, like rich's elapsed column."""
    whole = max(int(seconds), 0)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class _Silent:
    def advance(self, steps: int = 1, status: str = "") -> None:
        pass


class Silent:
    """No output at all (`-q`)."""

    @contextmanager
    def __call__(self, description: str, total: int | None) -> Iterator[Bar]:
        yield _Silent()

    def note(self, line: str) -> None:
        pass


silent = Silent()


class PlainProgress:
    """Plain progress lines for logs (stdout/stderr redirected to a file): no ANSI codes, no redraws.

    The rule: a phase with steps prints a line whenever at least `every` seconds have passed since it
    began or since its last line (checked when it advances), and one line when it ends; a status phase
    prints one line when it ends. A phase that fails prints nothing more, so a user error stays the only
    line. Lines: `DESCRIPTION: k/n (p%) H:MM:SS elapsed, R/s, H:MM:SS left, STATUS` while running and
    `DESCRIPTION: k/n (p%) done in H:MM:SS, R/s, STATUS` at the end (`DESCRIPTION: done in H:MM:SS` for a
    status). `write` defaults to sys.stderr (looked up at each line, flushed); `clock` is injectable."""

    def __init__(self, write: Callable[[str], None] | None = None, *, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if every <= 0:
            raise ValueError(f"every must be > 0 seconds, got {every}")
        self._write, self.every, self.clock = write, every, clock

    def note(self, line: str) -> None:
        if self._write is not None:
            self._write(line)
            return
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    @contextmanager
    def __call__(self, description: str, total: int | None) -> Iterator[Bar]:
        bar = _PlainBar(self, description, total)
        yield bar
        self.note(bar.line(self.clock(), done=True))


class _PlainBar:
    def __init__(self, owner: PlainProgress, description: str, total: int | None):
        self.owner, self.description, self.total = owner, description, total
        self.completed, self.status = 0, ""
        self.start = self.last = owner.clock()

    def advance(self, steps: int = 1, status: str = "") -> None:
        self.completed += steps
        self.status = status or self.status
        now = self.owner.clock()
        if now - self.last >= self.owner.every:
            self.last = now
            self.owner.note(self.line(now))

    def line(self, now: float, done: bool = False) -> str:
        elapsed = now - self.start
        if self.total is None:
            return f"{self.description}: done in {duration(elapsed)}"
        percent = 100 * self.completed // self.total if self.total else 100
        parts = [f"{self.description}: {self.completed}/{self.total} ({percent}%) "
                 + (f"done in {duration(elapsed)}" if done else f"{duration(elapsed)} elapsed")]
        rate = self.completed / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:,.0f}/s" if rate >= 100 else f"{rate:.3g}/s")
            if not done and self.completed < self.total:
                parts.append(f"{duration((self.total - self.completed) / rate)} left")
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)


class RichProgress:
    """Rich bars on stderr (a terminal): description, bar, k/n, elapsed, remaining, status. Rich allows
    one live display at a time, so a phase opened inside another (dev evaluation inside training) joins
    the open display and leaves it when done; the outermost phase's line stays on screen. A phase that
    fails is erased, so the error line is all that remains."""

    def __init__(self, console: Any = None):
        self._console = console
        self._display: Any = None  # the live rich.progress.Progress while a phase is open
        self._open = 0

    def _stderr(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, markup=False, emoji=False, highlight=False)
        return self._console

    def note(self, line: str) -> None:
        console = self._display.console if self._display is not None else self._stderr()
        console.print(line, markup=False, emoji=False, highlight=False, soft_wrap=True)

    @contextmanager
    def __call__(self, description: str, total: int | None) -> Iterator[Bar]:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        if self._display is None:
            columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}", markup=False))
            self._display = Progress(*columns, console=self._stderr(), transient=False)
            self._display.start()
        display = self._display
        task = display.add_task(description, total=total, status="")
        self._open += 1
        ok = False
        try:
            yield _RichBar(display, task)
            ok = True
        finally:
            self._open -= 1
            if ok and total is None:
                display.update(task, total=1, completed=1)
            if self._open or not ok:
                display.remove_task(task)
            if not self._open:
                if not ok:
                    display.live.transient = True
                display.stop()
                self._display = None


class _RichBar:
    def __init__(self, display: Any, task: Any):
        self.display, self.task = display, task

    def advance(self, steps: int = 1, status: str = "") -> None:
        if status:
            self.display.update(self.task, advance=steps, status=status)
        else:
            self.display.update(self.task, advance=steps)


class Countdown:
    """'cell k/n' lines for n items run one after another (or side by side): the time elapsed since `start`
    and, after the first item, an estimate of the time left (the mean time of the items finished so far x
    the items left, this one included). The caller passes the clock readings."""

    def __init__(self, total: int, start: float):
        self.total, self.start, self.done, self.started = total, start, 0, 0

    def begin(self, what: str, now: float) -> str:
        """The line of the next item starting (k: the items started so far; with several at once, more than
        the items done)."""
        self.started += 1
        elapsed = now - self.start
        total = max(self.total, self.started)  # an estimate of n that fell short never shows k > n
        line = f"cell {self.started}/{total} {what}: {duration(elapsed)} elapsed"
        if self.done:
            line += f", about {duration(elapsed / self.done * (total - self.done))} left"
        return line

    def finish(self) -> None:
        self.done += 1

    def summary(self, now: float) -> str:
        return f"grid: {self.done} cells ran in {duration(now - self.start)}"
