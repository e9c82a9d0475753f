"""Progress reporting without tying the library to a UI: library code asks a `ProgressFactory` for a
bar; the CLI passes `rich_progress`, tests and library users get `silent` by default."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator, Protocol


class Bar(Protocol):
    def advance(self, steps: int = 1, status: str = "") -> None: ...


ProgressFactory = Callable[[str, int], ContextManager[Bar]]


class _Silent:
    def advance(self, steps: int = 1, status: str = "") -> None:
        pass


@contextmanager
def silent(description: str, total: int) -> Iterator[Bar]:
    yield _Silent()


@contextmanager
def rich_progress(description: str, total: int) -> Iterator[Bar]:
    """A rich progress bar on stderr with a free-text status (e.g. the running loss)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, status="")

        class _Rich:
            def advance(self, steps: int = 1, status: str = "") -> None:
                bar.update(task, advance=steps, status=status)

        yield _Rich()
