"""`stepstone grid GRID.yaml` and `stepstone report GRID_DIR`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import console, interruptions, progress_factory, rerun_command, user_errors


def grid(
    spec: Path = typer.Argument(..., help="Grid YAML (see benchmarks/grids/)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE changes to the grid, e.g. seeds=[0]."),
    out: Optional[Path] = typer.Option(None, help="Grid folder (default: grids/<spec name>); rerun to resume."),
    isolate: bool = typer.Option(True, help="Run each cell in its own process (per-cell peak memory, crash safety)."),
    workers: Optional[int] = typer.Option(None, help="Cells at once: local processes (one per GPU on a GPU "
                                                     "machine), or SLURM jobs in flight. Default 1 locally."),
    executor: Optional[str] = typer.Option(None, help="Where cells run: local (processes here), slurm (one "
                                                      "job per cell, submitit), submitit-local (a dry run)."),
    partition: Optional[str] = typer.Option(None, help="SLURM partition of the cells' jobs."),
    time_min: Optional[int] = typer.Option(None, help="SLURM time limit per cell, minutes (default 240)."),
    gpus_per_cell: Optional[int] = typer.Option(None, help="GPUs per SLURM job (default 1)."),
    cpus_per_cell: Optional[int] = typer.Option(None, help="CPUs per SLURM job (default 8)."),
    mem_gb: Optional[int] = typer.Option(None, help="Memory per SLURM job, GB (default: the partition's)."),
    retries: Optional[int] = typer.Option(None, help="Times a cell whose process died is run again (default 1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run a transfer grid: intermediate adapters once, then every target cell; resumable."""
    from stepstone.experiments import load_executor, load_grid, run_grid
    from stepstone.pipelines import set_threads

    with interruptions(f"continue the grid with: {rerun_command()}"), user_errors():
        set_threads(None)
        loaded = load_grid(spec, tuple(overrides or ()))
        options = dict(engine=executor, workers=workers, retries=retries, partition=partition, time_min=time_min,
                       gpus_per_cell=gpus_per_cell, cpus_per_cell=cpus_per_cell, mem_gb=mem_gb)
        where = load_executor(spec, tuple(overrides or ()), options)
        folder = out or Path("grids") / spec.stem
        result = run_grid(loaded, folder, progress=progress_factory(quiet), echo=console.print,
                          isolate=isolate, executor=where)
    console.print(f"{result.ran} cells ran, {result.skipped} already done, {len(result.failed)} failed: {folder}")
    for cell in result.failed:
        console.print(f"  failed: {cell}")


def report(
    folder: Path = typer.Argument(..., help="A grid folder (holding cells.jsonl)."),
    plots: bool = typer.Option(True, help="Write PNG plots next to report.md."),
) -> None:
    """Write GRID_DIR/report.md (+ PNG plots) and print the headline table."""
    from rich.table import Table

    from stepstone.experiments import FLAG, build_report, terminal_rows

    with user_errors():
        result = build_report(folder, plots=plots)
    rows = terminal_rows(result)
    if rows:
        table = Table(*rows[0], title="zero-shot score (mean over non-English languages), mean ± std over seeds")
        for row in rows[1:]:
            table.add_row(*row)
        if any(FLAG in cell for row in rows[1:] for cell in row):
            table.caption = f"{FLAG}: a run of this entry did not learn (report.md: Runs that did not learn)"
        console.print(table)
    console.print(f"wrote {folder / 'report.md'}" + (f" and {len(result.plots)} plots" if result.plots else ""))
