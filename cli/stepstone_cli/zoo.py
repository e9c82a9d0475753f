"""`stepstone zoo list | show NAME | rm NAME | merge NEW A B ...`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import console, user_errors

app = typer.Typer(help="List, inspect, remove and merge zoo entries.", no_args_is_help=True)
ZooOption = typer.Option(None, "--zoo", help="Zoo folder (default: $STEPSTONE_ZOO or ./adapters_zoo).")


@app.command("list")
def list_entries(zoo_dir: Optional[Path] = ZooOption) -> None:
    """One line per entry: task (a chain's tasks in training order: sst2 -> anli), method, backbone, dev score,
    trainable parameters."""
    from rich.table import Table

    from stepstone.zoo import Zoo

    with user_errors():
        zoo = Zoo(zoo_dir)
        entries = zoo.entries()
    table = Table(title=f"zoo: {zoo.root}")
    table.add_column("name", no_wrap=True)
    for column in ("task", "method", "backbone", "dev", "trainable"):
        table.add_column(column)
    for e in entries:
        m = e.manifest
        main = m.metrics.main
        table.add_row(e.name, " -> ".join(m.chain) if m.chain else m.task.name, m.method.kind, m.backbone.name,
                      f"{main} {m.metrics.dev[main]:.2f}" if m.metrics.dev else "-",
                      f"{m.trainable.parameters:,}")
    console.print(table if entries else f"zoo {zoo.root} is empty")


@app.command("show")
def show(name: str = typer.Argument(..., help="Zoo entry name, or a run folder (any artifact folder)."),
         zoo_dir: Optional[Path] = ZooOption) -> None:
    """Print an entry's or a run's manifest (JSON) after checking its weights against their hashes."""
    from stepstone.artifacts import to_json
    from stepstone.zoo import Zoo, show_artifact

    with user_errors():
        _, manifest = show_artifact(name, Zoo(zoo_dir))
    console.print_json(to_json(manifest.to_json()))


@app.command("rm")
def remove(
    name: str = typer.Argument(..., help="Zoo entry name."),
    zoo_dir: Optional[Path] = ZooOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a zoo entry (runs built on it keep their own copy)."""
    from stepstone.zoo import Zoo

    with user_errors():
        zoo = Zoo(zoo_dir)
        entry = zoo.get(name, verify=False)
        if not yes:
            typer.confirm(f"remove {entry.path}?", abort=True)
        zoo.remove(name)
    console.print(f"removed {entry.path}")


@app.command("merge")
def merge(
    new: str = typer.Argument(..., help="Name of the new zoo entry."),
    members: List[str] = typer.Argument(..., help="Two or more zoo entries of one method, settings and backbone."),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per member, comma-separated "
                                          "(e.g. 0.7,0.3; normalised to sum 1). Default: uniform."),
    zoo_dir: Optional[Path] = ZooOption,
) -> None:
    """Average the members' adapter tensors (AdapterSoup) into a new zoo entry; heads too when they share a task."""
    from stepstone.errors import StepstoneError
    from stepstone.merge import merge as merge_entries
    from stepstone.zoo import Zoo

    with user_errors():
        parsed = None
        if weights is not None:
            items = [w.strip() for w in weights.split(",")]
            try:
                parsed = [float(w) for w in items]
            except ValueError:
                bad = next(w for w in items if not _is_number(w))
                raise StepstoneError(f"bad --weights '{weights}': '{bad}' is not a number (give one number per "
                                     f"member, comma-separated)") from None
        entry = merge_entries(new, members, parsed, Zoo(zoo_dir))
    record = entry.manifest.merged_from
    mix = ", ".join(f"{m} {w:.2f}" for m, w in zip(record.members, record.weights))
    console.print(f"merged {mix} into {entry.path} (head: {entry.manifest.task.name if record.heads else 'none'})")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
