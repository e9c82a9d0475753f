"""Shared CLI plumbing: user errors become one line on stderr and exit code 2; an interrupted run one line
and exit code 130 (SIGINT) / 143 (SIGTERM); output is verbatim.

Every string the CLI prints carries user text (task and zoo names, paths, `none [bottleneck]` report
columns, error messages quoting a value), so no console here reads rich markup or emoji codes: `[de]`
and `:x:` print as they are. Styles are given as arguments (style=..., Text), never as markup."""
from __future__ import annotations

import os
import shlex
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

console = Console(markup=False, emoji=False)
EXIT_USER_ERROR = 2
GLOBAL = {"quiet": False}  # `stepstone -q COMMAND`: set by the app's callback on every invocation


def stderr_console() -> Console:
    return Console(stderr=True, markup=False, emoji=False, highlight=False)


@contextmanager
def user_errors() -> Iterator[None]:
    from rich.text import Text

    from stepstone.errors import StepstoneError

    try:
        yield
    except StepstoneError as err:
        stderr_console().print(Text.assemble(("error:", "bold red"), f" {err}"), soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None


@contextmanager
def interruptions(then: str | None = None, otherwise: str | None = None) -> Iterator[None]:
    """An interrupted run becomes one line on stderr: what stopped, where, what was saved and, when it can
    continue, `then` (the command that continues it), else `otherwise` (e.g. that nothing was written);
    exit code 128 + the signal."""
    from stepstone.interrupts import Interrupted

    try:
        yield
    except (Interrupted, KeyboardInterrupt) as err:
        if not isinstance(err, Interrupted):  # SIGINT outside stepstone's handlers (e.g. while importing)
            err = Interrupted(signal.SIGINT)
        if err.primary:
            more = then if then and err.resumable else otherwise
            line = str(err) + (f"; {more}" if more else "")
            stderr_console().print(line, soft_wrap=True)
        raise typer.Exit(err.exit_code) from None


def rerun_command(*extra: str) -> str:
    """This command line as `stepstone ...`, plus `extra` options it lacks (e.g. --resume)."""
    args = sys.argv[1:]
    args += [e for e in extra if e not in args]
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # one process of `accelerate launch` / torchrun
        return "<the same launcher> -m stepstone_cli.main " + shlex.join(args)
    return shlex.join(["stepstone", *args])


def progress_factory(quiet: bool):
    """Nothing with -q; rich bars on a terminal; plain lines (no ANSI codes, one every 30 s per phase and
    one when it ends) when stderr is a file or a pipe (nohup, a cluster job)."""
    from stepstone.progress import PlainProgress, RichProgress, silent

    if quiet or GLOBAL["quiet"]:
        return silent
    errors = stderr_console()
    return RichProgress(errors) if errors.is_terminal else PlainProgress()


def complete_task(incomplete: str) -> list[str]:
    """Shell completion of --task: the registered task names starting with what was typed."""
    from stepstone.tasks import TASKS

    return [name for name in TASKS if name.startswith(incomplete)]
