"""Shared CLI plumbing: user errors become one line on stderr and exit code 2; an interrupted run one line
and exit code 130 (SIGINT) / 143 (SIGTERM)."""
from __future__ import annotations

import os
import shlex
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

console = Console()
EXIT_USER_ERROR = 2


@contextmanager
def user_errors() -> Iterator[None]:
    from stepstone.errors import StepstoneError

    try:
        yield
    except StepstoneError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None


@contextmanager
def interruptions(then: str | None = None) -> Iterator[None]:
    """An interrupted run becomes one line on stderr: what stopped, where, what was saved and, when it can
    continue, `then` (the command that continues it); exit code 128 + the signal."""
    from stepstone.interrupts import Interrupted

    try:
        yield
    except (Interrupted, KeyboardInterrupt) as err:
        if not isinstance(err, Interrupted):  # SIGINT outside stepstone's handlers (e.g. while importing)
            err = Interrupted(signal.SIGINT)
        if err.primary:
            line = str(err) + (f"; {then}" if then and err.resumable else "")
            Console(stderr=True).print(line, highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(err.exit_code) from None


def rerun_command(*extra: str) -> str:
    """This command line as `stepstone ...`, plus `extra` options it lacks (e.g. --resume)."""
    args = sys.argv[1:]
    args += [e for e in extra if e not in args]
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # one process of `accelerate launch` / torchrun
        return "<the same launcher> -m stepstone_cli.main " + shlex.join(args)
    return shlex.join(["stepstone", *args])


def progress_factory(quiet: bool):
    from stepstone.progress import rich_progress, silent

    return silent if quiet else rich_progress
