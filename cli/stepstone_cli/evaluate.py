"""`stepstone evaluate`: zero-shot scores of a run or zoo entry in every language of its task."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import complete_task, console, interruptions, progress_factory, user_errors


def evaluate(
    run: Optional[str] = typer.Argument(None, help="A run folder or a zoo entry name (omit for a bare --backbone)."),
    task: Optional[str] = typer.Option(None, help="Task to evaluate (default: the run's); bucc / tatoeba work with any run.",
                                       autocompletion=complete_task),
    langs: Optional[str] = typer.Option(None, help="Comma-separated languages (default: the benchmark's list; others need a local file)."),
    split: str = typer.Option("test", help="train, validation or test."),
    batch_size: int = typer.Option(32, min=1, help="Evaluation batch size."),
    max_examples: Optional[int] = typer.Option(None, min=1, help="Only the first N examples per language."),
    skip_examples: int = typer.Option(0, help="Leave out the first N examples per language (those a run trained on "
                                              "when it trained on the front of this split)."),
    data_dir: Optional[Path] = typer.Option(None, help="Local data root for tasks read from files."),
    backbone: Optional[str] = typer.Option(None, help="Backbone to load instead of the recorded one; alone: evaluate it bare."),
    layer: Optional[int] = typer.Option(None, help="Retrieval: layer to pool (default: XTREME's 14 of 24, scaled)."),
    pooling: str = typer.Option("mean", help="Retrieval: mean (XTREME's, special tokens included) or cls."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per example (default: the run's train.max_length; retrieval 128)."),
    doc_stride: Optional[int] = typer.Option(None, help="QA: window overlap in tokens (default: the run's train.doc_stride)."),
    perturb: Optional[List[str]] = typer.Option(
        None, help="Also score the same examples perturbed (repeatable): typo:RATE, dropout:RATE, "
                   "codeswitch:LEXICON:RATE (RATE 0-1; LEXICON: 'source target' lines, relative to here)."),
    perturb_seed: int = typer.Option(0, help="Seed of the perturbations (each example draws from its own generator)."),
    data_file: Optional[Path] = typer.Option(None, help="Domain shift: also score this file, in the task's native "
                                                        "format, against the in-domain languages."),
    data_lang: str = typer.Option("en", help="Language of --data-file (the metric's language rules, e.g. QA "
                                             "normalisation)."),
    output: Optional[Path] = typer.Option(None, help="JSON path (default: RUN/evaluations/TASK.SPLIT.json)."),
    zoo_dir: Optional[Path] = typer.Option(None, "--zoo", help="Zoo folder (default: $STEPSTONE_ZOO or ./adapters_zoo)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Evaluate zero-shot: print a per-language table with the average and write the scores as JSON.

    Retrieval tasks need no training: `stepstone evaluate --backbone DIR --task tatoeba` scores a bare
    backbone, `stepstone evaluate RUN --task tatoeba` one with the run's adapters active."""
    from rich.table import Table

    from stepstone.interrupts import stopping
    from stepstone.pipelines import evaluate as run_evaluation
    from stepstone.pipelines import set_threads
    from stepstone.zoo import Zoo

    languages = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    # the scores are written once, atomically, at the end: an interrupted evaluation leaves nothing behind
    with interruptions(otherwise="nothing was written"), user_errors(), stopping():
        set_threads(None)
        result = run_evaluation(run, task=task, layer=layer, pooling=pooling, zoo=Zoo(zoo_dir), langs=languages,
                                split=split, batch_size=batch_size, max_examples=max_examples, data_dir=data_dir,
                                skip_examples=skip_examples, perturb=perturb or (), perturb_seed=perturb_seed,
                                data_file=data_file, data_lang=data_lang,
                                backbone=backbone, output=output, max_length=max_length, doc_stride=doc_stride,
                                progress=progress_factory(quiet))
    names = sorted(next(iter(result.scores.values())))
    table = Table("language", *names, title=f"{result.task} ({result.split}), main metric: {result.metric}")
    for lang, scores in result.scores.items():
        table.add_row(lang, *(f"{scores[n]:.2f}" for n in names))
    table.add_row("average", *(f"{sum(s[n] for s in result.scores.values()) / len(result.scores):.2f}"
                               for n in names), style="bold")
    console.print(table)
    for lang, reason in result.skipped.items():
        console.print(f"skipped {lang}: {reason}", highlight=False, soft_wrap=True)
    if result.outside_benchmark:
        console.print(f"outside the benchmark's language list for {result.task} (read from local files): "
                      f"{', '.join(result.outside_benchmark)}", highlight=False, soft_wrap=True)
    if result.zero_shot is not None:  # the headline: transfer to the languages not trained on
        langs = result.zero_shot_languages
        shown = ", ".join(langs) if len(langs) <= 6 else f"{len(langs)} languages"
        from rich.text import Text

        console.print(Text.assemble((f"zero-shot {result.metric}: {result.zero_shot:.2f}", "bold"),
                                    f" (mean of {shown}; {result.train_language} apart)"))
    _print_perturbed(result)
    _print_domain(result)
    console.print(f"wrote {result.output}")


def _print_perturbed(result) -> None:
    """One table per perturbation: the main metric clean, perturbed and the drop, per language and on average."""
    from rich.table import Table

    main = result.metric
    for label, by_lang in result.perturbed.items():
        table = Table("language", "clean", "perturbed", "drop", title=f"{label}: {main}")
        rows = [(result.scores[lang][main], metrics[main]) for lang, metrics in by_lang.items()]
        for lang, (clean, noisy) in zip(by_lang, rows):
            table.add_row(lang, f"{clean:.2f}", f"{noisy:.2f}", f"{clean - noisy:.2f}")
        mean = [sum(column) / len(rows) for column in zip(*rows)]
        table.add_row("mean", f"{mean[0]:.2f}", f"{mean[1]:.2f}", f"{mean[0] - mean[1]:.2f}", style="bold")
        console.print(table)


def _print_domain(result) -> None:
    """The data file's row and its drop from the in-domain languages' mean."""
    from rich.table import Table

    if result.domain is None:
        return
    domain, main = result.domain, result.metric
    names = sorted(domain["scores"])
    table = Table("data", "examples", *names, title=f"domain shift: {domain['file']}, main metric: {main}")
    table.add_row(domain["label"], str(domain["examples"]), *(f"{domain['scores'][n]:.2f}" for n in names))
    console.print(table)
    console.print(f"in-domain {main} {domain['in_domain']:.2f} (mean of {', '.join(result.scores)}), "
                  f"{domain['label']} {domain['scores'][main]:.2f}: drop {domain['drop']:.2f}", highlight=False,
                  soft_wrap=True)
