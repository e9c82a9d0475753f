"""Shared CLI plumbing: user errors become one line on stderr and exit code 2."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

console = Console()
EXIT_USER_ERROR = 2
GLOBAL = {"quiet": False}  # `stepstone -q COMMAND`: set by the app's callback on every invocation


@contextmanager
def user_errors() -> Iterator[None]:
    from stepstone.errors import StepstoneError

    try:
        yield
    except StepstoneError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None


def progress_factory(quiet: bool):
    from stepstone.progress import rich_progress, silent

    return silent if quiet or GLOBAL["quiet"] else rich_progress


def complete_task(incomplete: str) -> list[str]:
    """Shell completion of --task: the registered task names starting with what was typed."""
    from stepstone.tasks import TASKS

    return [name for name in TASKS if name.startswith(incomplete)]
