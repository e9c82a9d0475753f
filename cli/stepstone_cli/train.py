"""`stepstone train`: an intermediate adapter into the zoo, a target adapter on a composition, or a full fine-tune."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from stepstone.methods import METHODS  # light: the registry only (the adapters library loads when a model is built)

from .common import (complete_task, console, interruptions, progress_factory, rerun_command, stderr_console,
                     user_errors)


def train(
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE settings, e.g. train.lr=3e-4 method.lora.r=16."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run config (see adapters_zoo/*.yaml)."),
    task: Optional[List[str]] = typer.Option(None, help="Task to train on (`stepstone tasks`); repeat for multi-task.",
                                             autocompletion=complete_task),
    method: Optional[str] = typer.Option(None, help=f"Method: {', '.join(METHODS)} (full = --full-finetune)."),
    on: Optional[str] = typer.Option(None, "--on", help="Train on top of zoo adapters: 'Stack(a, b)', 'Fuse(a, b)' or "
                                                        "'Average(a=0.7, b=0.3)' "
                                                        "(on their backbone unless --backbone says otherwise)."),
    full_finetune: bool = typer.Option(False, "--full-finetune", help="Train every backbone weight (the paper's baseline)."),
    init_from: Optional[str] = typer.Option(None, help="Start from this artifact (a folder, else a zoo entry name): "
                                            "an adapter continues a zoo adapter's weights with a new head (its method "
                                            "and backbone unless given); a full fine-tune, a full run's encoder."),
    backbone: Optional[str] = typer.Option(None, help="'tiny', a local model folder or a hub id (e.g. xlm-roberta-large)."),
    name: Optional[str] = typer.Option(None, help="Zoo entry / run name (default: TASK-METHOD)."),
    zoo_dir: Optional[Path] = typer.Option(None, "--zoo", help="Zoo folder (default: $STEPSTONE_ZOO or ./adapters_zoo)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where composed and full fine-tune runs are saved."),
    data_dir: Optional[Path] = typer.Option(None, help="Local data root for tasks read from files."),
    quantize: Optional[str] = typer.Option(None, help="Load the frozen backbone in 4bit (NF4) or 8bit (bitsandbytes)."),
    precision: Optional[str] = typer.Option(None, help="fp32 (default), bf16 or fp16 (autocast; fp16 with loss scaling)."),
    grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing", help="Recompute activations in backward: less memory."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Optimizer steps between checkpoints (default 500; 0 = none)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's latest checkpoint (RUNS_DIR/NAME.checkpoint)."),
    log: Optional[List[str]] = typer.Option(None, "--log", help="Also log live to: tensorboard (RUNS_DIR/tensorboard/NAME), "
                                            "wandb (offline unless WANDB_MODE is set), mlflow; repeat or comma-separate."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train an adapter (saved to the zoo) or a target adapter on a Stack / Fuse of zoo adapters, or
    a full fine-tune (saved to RUNS_DIR/NAME). Settings: --config file, then options, then KEY=VALUE."""
    from stepstone import composition, health, tracking
    from stepstone.errors import StepstoneError
    from stepstone.pipelines import load_run_spec, train_run
    from stepstone.zoo import Zoo

    settings: dict = {}
    with interruptions(f"resume with: {rerun_command('--resume')}"), user_errors():
        if method is not None and full_finetune:
            raise StepstoneError("--method and --full-finetune exclude each other")
        if task:
            settings["task"] = list(task)
        if name is not None:
            settings["name"] = name
        if method is not None or full_finetune:
            settings["method"] = {"kind": "full" if full_finetune else method}
        if backbone is not None or quantize is not None:
            settings["backbone"] = {k: v for k, v in (("name", backbone), ("quantize", quantize)) if v is not None}
        train_settings = {k: v for k, v in (("precision", precision), ("grad_checkpointing", grad_checkpointing or None),
                                            ("checkpoint_every", checkpoint_every)) if v is not None}
        if train_settings:
            settings["train"] = train_settings
        if on is not None:
            parsed = composition.parse(on)
            settings["compose"] = {"block": parsed.block.value, "members": list(parsed.members),
                                   **({"weights": list(parsed.weights)} if parsed.weights else {})}
        if init_from is not None:
            settings["init_from"] = init_from
        if data_dir is not None:
            settings["data_dir"] = str(data_dir)
        trackers = tracking.parse(log or [])
        zoo = Zoo(zoo_dir)
        spec = load_run_spec(config, settings, overrides or [], zoo=zoo)
        outcome = train_run(spec, zoo=zoo, runs_dir=runs_dir, progress=progress_factory(quiet),
                            log=trackers, resume=resume)
    if not outcome.primary:  # another process of `accelerate launch`: the first one reports
        return
    manifest = outcome.manifest
    metric = manifest.metrics.main
    console.print(f"setup: {manifest.composition.setup if manifest.composition else manifest.mode}")
    console.print(f"trained {outcome.trainable.describe()}")
    dev = manifest.metrics.dev
    shown = f"{metric}: {dev[metric]:.2f}" if dev else "not evaluated (train.dev=false)"
    console.print(f"dev ({manifest.task.train_language}) {shown} "
                  f"(best epoch {manifest.metrics.best_epoch}, {manifest.train_seconds:.1f}s)")
    console.print(f"saved {manifest.kind.value}: {outcome.path}")
    warning = health.warning(manifest.name, manifest.learning)
    if warning is not None:  # one line on stderr: a run that did not learn must not pass unnoticed
        stderr_console().print(warning, soft_wrap=True)
