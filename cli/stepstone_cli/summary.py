"""`stepstone summary`: the XTREME-style summary of evaluation reports, optionally by language group."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import console, user_errors


def summary(
    reports: List[Path] = typer.Argument(..., help="Evaluation JSON files or run folders (their evaluations/*.json)."),
    output: Optional[Path] = typer.Option(None, help="Also write the summary as JSON here."),
    by: Optional[str] = typer.Option(None, "--by", help="Also group each task's languages by the languages table: "
                                                        "tier, family or script (see README, Languages)."),
) -> None:
    """XTREME-style summary: each task averaged over its languages, per category, and overall."""
    from stepstone.artifacts import check_destination, to_json, write_text_atomic
    from stepstone.experiments import summarize

    with user_errors():
        if output is not None:
            check_destination(output, "write")
        result = summarize(reports, by=by)
        if output is not None:
            write_text_atomic(output, to_json(result.to_dict()))
    console.print(_tasks_table(result))
    if result.by is not None:
        console.print(_groups_table(result))


def _tasks_table(result):
    from rich.table import Table

    em = any(t.exact_match is not None for t in result.tasks)  # QA reports: exact match beside F1
    table = Table("category", "task", "metric", "languages", "average", *(["exact match"] if em else []),
                  "zero-shot (no en)")
    blank = [""] if em else []
    for t in result.tasks:
        exact = ([f"{t.exact_match:.2f}" if t.exact_match is not None else "-"] if em else [])
        table.add_row(t.category, t.task, t.metric, str(t.languages), f"{t.average:.2f}", *exact,
                      "-" if t.zero_shot is None else f"{t.zero_shot:.2f}")
    for category, value in result.categories.items():
        table.add_row(category, "(category mean)", "", "", f"{value:.2f}", *blank, "", style="italic")
    table.add_row("overall", "(mean of tasks)", "", "", f"{result.overall:.2f}", *blank, "", style="bold")
    return table


def _groups_table(result):
    """One row per task: its main metric's mean per language group (and the group's number of languages)."""
    from rich.table import Table

    names = list(result.group_means)
    table = Table("task", "metric", *names, title=f"by {result.by}: mean (languages)")
    for t in result.tasks:
        cells = [f"{t.groups[g].mean:.2f} ({len(t.groups[g].languages)})" if g in t.groups else "-" for g in names]
        table.add_row(t.task, t.metric, *cells)
    table.add_row("(mean of tasks)", "", *(f"{result.group_means[g]:.2f}" for g in names), style="bold")
    return table
