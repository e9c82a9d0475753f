"""The `stepstone` command. Each command parses its options, calls one library function, prints.

Heavy libraries (torch, transformers, adapters) are imported inside commands so `--help` stays fast.
"""
from __future__ import annotations

import typer

from . import evaluate, grid, interop, rank, summary, train, zoo
from .common import GLOBAL, console, interruptions, progress_factory, user_errors

app = typer.Typer(
    name="stepstone",
    help="Parameter-efficient intermediate-task transfer for zero-shot cross-lingual NLP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, for any command "
                                                                       "(as each command's own -q).")) -> None:
    GLOBAL["quiet"] = quiet


app.command("train", no_args_is_help=True)(train.train)
app.command("evaluate", no_args_is_help=True)(evaluate.evaluate)
app.command("grid", no_args_is_help=True)(grid.grid)
app.command("report", no_args_is_help=True)(grid.report)
app.command("rank", no_args_is_help=True)(rank.rank)
app.command("summary", no_args_is_help=True)(summary.summary)
app.command("export", no_args_is_help=True)(interop.export)
app.command("import", no_args_is_help=True)(interop.import_)
app.add_typer(zoo.app, name="zoo")


@app.command("tasks")
def tasks(as_json: bool = typer.Option(False, "--json", help="Every task with all its fields, as JSON.")) -> None:
    """List the registered tasks: format, metric, languages, data source."""
    from rich.table import Table

    from stepstone.tasks import TASKS, task_record

    if as_json:
        from stepstone.artifacts import to_json

        typer.echo(to_json({"tasks": [task_record(task) for _, task in TASKS.items()]}), nl=False)
        return

    table = Table()
    for column in ("task", "format", "metric", "labels", "languages"):
        table.add_column(column, no_wrap=column != "languages")
    table.add_column("English training data")
    table.add_column("source")
    for name, task in TASKS.items():
        if task.num_choices:
            labels = f"{task.num_choices} choices"
        else:
            labels = ", ".join(task.labels) if 0 < len(task.labels) <= 3 else (f"{len(task.labels)}" if task.labels else "-")
        official = task.official_languages  # the benchmark's list; "+N": more the source has (XQuAD ro, ...)
        shown = " ".join(official[:12]) + (" ..." if len(official) > 12 else "")
        extra = len(task.languages) - len(official)
        english = "-" if not task.trainable else (task.train_from or "own train split")
        table.add_row(name, task.format.value, task.metric.main, labels,
                      f"{len(official)}{f' (+{extra})' if extra else ''}: {shown}", english,
                      task.source.describe())
    console.print(table)


@app.command("demo")
def demo(
    out: str = typer.Option("demo-output", help="Folder for the demo's zoo, runs and results (rebuilt each time)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run the whole pipeline on the tiny backbone and toy tasks (offline, ~1 minute on 2 CPU cores)."""
    from pathlib import Path

    from stepstone.demo import run_demo
    from stepstone.pipelines import set_threads

    with interruptions(), user_errors():
        set_threads(None)
        result = run_demo(Path(out), progress_factory(quiet))
    from rich.table import Table

    table = Table(title=f"toy-tags zero-shot ({result.metric}, test split, trained on en)")
    table.add_column("run", no_wrap=True)
    for column in ("trainable", *result.languages, "zero-shot mean"):
        table.add_column(column, no_wrap=True, justify="right")
    for row in result.rows:
        table.add_row(row.run, f"{row.trainable:,} ({row.percent:.1f}%)",
                      *(f"{row.scores[lang]:.1f}" for lang in result.languages), f"{row.zero_shot:.1f}")
    console.print(table)
    for row in result.rows:
        console.print(f"  {row.run}: {row.setup}", highlight=False)
    console.print(f"results: {result.out / 'results.json'}, {result.out / 'results.md'}")


if __name__ == "__main__":
    app()
