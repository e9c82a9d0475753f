"""`stepstone rank`: which zoo adapters will help a target, estimated before any training."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import complete_task, console, interruptions, progress_factory, user_errors


def rank(
    target: str = typer.Option(..., help="The target task (`stepstone tasks`): classification, tagging, multiple "
                                         "choice or QA.", autocompletion=complete_task),
    candidates: Optional[List[str]] = typer.Option(None, help="Zoo entries to rank, comma-separated or repeated "
                                                              "(default: every zoo adapter on the backbone)."),
    estimator: Optional[List[str]] = typer.Option(None, help="logme, semb, proxy; comma-separated or repeated "
                                                             "(default: logme,semb; proxy trains)."),
    examples: Optional[int] = typer.Option(None, help="English training examples of the target the estimators read "
                                                      "(default 500, or all where there are fewer)."),
    steps: int = typer.Option(50, help="proxy: optimizer steps of the short target-adapter training."),
    lr: Optional[float] = typer.Option(None, help="proxy: learning rate (default 1e-3)."),
    batch_size: Optional[int] = typer.Option(None, help="proxy: batch size (default 16)."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per example for every estimator (default 128)."),
    method: Optional[str] = typer.Option(None, help="proxy: the target adapter's method (default: the candidates')."),
    train_split: str = typer.Option("train", help="The target's English split to read: train, or validation "
                                                  "where it has no train split here."),
    data_dir: Optional[Path] = typer.Option(None, help="Local data root for tasks read from files."),
    backbone: Optional[str] = typer.Option(None, help="Where the candidates' backbone is (default: as recorded)."),
    zoo_dir: Optional[Path] = typer.Option(None, "--zoo", help="Zoo folder (default: $STEPSTONE_ZOO or ./adapters_zoo)."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON (for scripts)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Rank zoo adapters (and the bare backbone, 'none') for TARGET by LogME, dataset similarity and a short proxy
    training; print the ranked table and the winner's --on for `stepstone train`."""
    from stepstone.pipelines import set_threads
    from stepstone.ranking import parse_estimators
    from stepstone.ranking import rank as run_rank
    from stepstone.ranking.proxy import PROXY_TRAIN
    from stepstone.zoo import Zoo

    with interruptions(otherwise="nothing was written"), user_errors():
        set_threads(None)
        chosen = parse_estimators(estimator or ["logme,semb"])
        names = [n.strip() for part in candidates for n in part.split(",") if n.strip()] if candidates else None
        settings = {k: v for k, v in (("lr", lr), ("batch_size", batch_size), ("max_length", max_length)) if v is not None}
        train = _train(PROXY_TRAIN, settings)
        result = run_rank(target, candidates=names, estimators=chosen, examples=examples, data_dir=data_dir,
                          zoo=Zoo(zoo_dir), backbone=backbone, method=method, train_split=train_split, steps=steps,
                          train=train, progress=progress_factory(quiet or as_json))
    if as_json:
        from stepstone.artifacts import to_json

        typer.echo(to_json(result.to_dict()), nl=False)
        return
    _print(result)


def _train(base, settings: dict):
    """The proxy's TrainSpec with the options given; a bad value is one line."""
    from dataclasses import replace

    from stepstone.errors import StepstoneError

    try:
        return replace(base, **settings)
    except ValueError as err:
        raise StepstoneError(f"proxy settings: {err}") from None


def _print(result) -> None:
    from rich.table import Table

    first = result.estimators[0]
    table = Table(title=f"rank for {result.target} ({result.examples} English examples, backbone {result.backbone})")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("candidate", no_wrap=True)
    for e in result.estimators:
        table.add_column(f"{e.value} (rank)", justify="right", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    ordered = result.order(first) + [r for r in result.rows if r.value(first) is None]
    for row in ordered:
        scores = [row.scores[e.value] for e in result.estimators]
        shown = ["-" if s.value is None else f"{s.value:.4f} ({result.rank_of(e, row.candidate)})"
                 + ("*" if s.cached else "") for e, s in zip(result.estimators, scores)]
        seconds = f"{sum(s.seconds for s in scores):.1f}"
        position = result.rank_of(first, row.candidate)
        table.add_row("-" if position is None else str(position), row.candidate, *shown, seconds)
    console.print(table)
    if any(s.cached for row in result.rows for s in row.scores.values()):
        console.print("*: from the feature cache ($STEPSTONE_CACHE/features), no model pass", highlight=False,
                      soft_wrap=True)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for row in result.rows:
        missing = [f"{k}: {s.note}" for k, s in row.scores.items() if s.value is None and row.candidate != "none"]
        if missing:
            console.print(f"not scored: {row.candidate}: {'; '.join(missing)}", highlight=False, soft_wrap=True)
    for e in result.estimators:
        winner = result.winner(e)
        if winner is None:
            continue
        on = result.on(e)
        advice = f'--on "{on}"' if on else "no intermediate adapter (train the target adapter alone)"
        console.print(f"best by {e.value}: {winner.candidate}: {advice}", highlight=False, soft_wrap=True)
    on = result.on()
    if on:
        console.print(f'train it: stepstone train --task {result.target} --on "{on}"', highlight=False, soft_wrap=True)
