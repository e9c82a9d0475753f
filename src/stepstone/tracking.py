"""Live experiment tracking beyond the run's own train_log.jsonl, through accelerate's tracker API
(`accelerate.tracking`: TensorBoardTracker, WandBTracker, MLflowTracker, looked up by name in
LOGGER_TYPE_TO_CLASS, so a tracker registered there with `register_tracker_class` is used the same way).

Each tracker gets the run's resolved settings once (dotted keys: `train.lr`) and, per optimizer step,
`train/loss` and `train/lr`, per dev evaluation `dev/TASK/METRIC`, at the step they belong to. Nothing
here reaches the network by default: TensorBoard writes event files; W&B runs in offline mode unless
WANDB_MODE is set (sync later with `wandb sync`); MLflow writes where its own tracking URI points
(MLFLOW_TRACKING_URI, else local files in the working directory)."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import StepstoneError

Sink = Callable[[dict], None]
PROJECT = "stepstone"  # W&B project / MLflow experiment unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME say otherwise


class Tracker(str, Enum):
    """Where `--log` sends the training log live (train_log.jsonl is always written)."""

    TENSORBOARD = "tensorboard"  # RUNS_DIR/tensorboard/NAME
    WANDB = "wandb"  # Weights & Biases, offline unless WANDB_MODE is set; files under RUNS_DIR/wandb
    MLFLOW = "mlflow"  # MLflow: experiment `stepstone`, run NAME


INSTALL = {Tracker.TENSORBOARD: "pip install tensorboard", Tracker.WANDB: "pip install wandb",
           Tracker.MLFLOW: "pip install mlflow"}


def parse(values: Sequence[str | Tracker]) -> tuple[Tracker, ...]:
    """`--log` values (repeated, or comma-separated) as trackers, in the order given, each once."""
    out: list[Tracker] = []
    for value in values:
        for name in [value.value] if isinstance(value, Tracker) else value.split(","):
            if not name.strip():
                continue
            try:
                tracker = Tracker(name.strip())
            except ValueError:
                raise StepstoneError(f"unknown --log '{name.strip()}' (valid: {', '.join(t.value for t in Tracker)}; "
                                     "train_log.jsonl is always written)") from None
            if tracker not in out:
                out.append(tracker)
    return tuple(out)


def check(trackers: Sequence[Tracker]) -> None:
    """Every tracker's package is installed, by accelerate's own list (`get_available_trackers`, which
    its `filter_trackers` consults and then drops the missing ones silently, logging through a state
    only an Accelerator sets up): else one error naming each missing one and how to install it."""
    if not trackers:
        return
    from accelerate.tracking import get_available_trackers

    found = {str(t) for t in get_available_trackers()}
    missing = [t for t in trackers if t.value not in found]
    if missing:
        raise StepstoneError("; ".join(f"--log {t.value} needs the {t.value} package ({INSTALL[t]})" for t in missing))


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as {dotted key: scalar}; lists and empty mappings as JSON text (trackers take
    bool, int, float, str or None)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out


def values_of(record: dict) -> dict[str, float]:
    """A train_log.jsonl record as tracker scalars: `train/loss`, `train/lr`, or `dev/TASK/METRIC`."""
    if record["kind"] == "step":
        return {"train/loss": record["loss"], "train/lr": record["lr"]}
    return {f"dev/{task}/{name}": value for task, metrics in record["dev"].items() for name, value in metrics.items()}


def _open(tracker: Tracker, name: str, runs_dir: Path) -> Any:
    """The accelerate tracker object, built the way `Accelerator.init_trackers` builds it (project
    name first, then the logging directory when the class asks for one, then its own keywords)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    cls = LOGGER_TYPE_TO_CLASS[tracker.value]
    kwargs: dict[str, Any] = {}
    if tracker is Tracker.TENSORBOARD:
        return cls(name, str(runs_dir / "tensorboard"))  # events under RUNS_DIR/tensorboard/NAME
    if tracker is Tracker.WANDB:
        kwargs["name"] = name
        if "WANDB_MODE" not in os.environ:  # offline-safe by default; WANDB_MODE=online syncs live
            kwargs["mode"] = "offline"
        if "WANDB_DIR" not in os.environ:
            (runs_dir / "wandb").mkdir(parents=True, exist_ok=True)
            kwargs["dir"] = str(runs_dir / "wandb")
        project = os.environ.get("WANDB_PROJECT") or PROJECT
    else:  # MLflow: MLFLOW_EXPERIMENT_NAME, if set, wins inside the tracker
        kwargs["run_name"] = name
        project = PROJECT
    if getattr(cls, "requires_logging_directory", False):
        return cls(project, str(runs_dir / tracker.value), **kwargs)
    return cls(project, **kwargs)


@contextmanager
def open_trackers(selected: Sequence[Tracker], name: str, runs_dir: Path, settings: dict) -> Iterator[Sink]:
    """A sink sending each train_log record to every selected tracker (started here, with `settings`
    stored as the run's configuration; finished on the way out, also after an error)."""
    check(selected)
    from accelerate import PartialState

    PartialState()  # accelerate's trackers log through its logger, which needs the (here one-process) state
    opened: list[Any] = []
    try:
        for tracker in selected:
            instance = _open(tracker, name, Path(runs_dir))
            instance.start()
            opened.append(instance)
            instance.store_init_configuration(flatten(settings))

        def sink(record: dict) -> None:
            values = values_of(record)
            for instance in opened:
                instance.log(values, step=record["step"])

        yield sink
    finally:
        for instance in opened:
            instance.finish()
