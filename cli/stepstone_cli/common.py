"""Shared CLI plumbing: user errors become one line on stderr and exit code 2; output is verbatim.

Every string the CLI prints carries user text (task and zoo names, paths, `none [bottleneck]` report
columns, error messages quoting a value), so no console here reads rich markup or emoji codes: `[de]`
and `:x:` print as they are. Styles are given as arguments (style=..., Text), never as markup."""
from __future__ import annotations

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
