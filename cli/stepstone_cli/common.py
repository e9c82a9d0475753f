"""Shared CLI plumbing: user errors become one line on stderr and exit code 2."""
from __future__ import annotations

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


def progress_factory(quiet: bool):
    from stepstone.progress import rich_progress, silent

    return silent if quiet else rich_progress
