"""ONE training loop for every mode, as small named steps. The mode (modes.py) is an explicit value: it
gives the trainable parameter set (computed, applied and asserted before the first step), the optimizer's
parameter groups and any extra loss; the loop knows no mode by name. The loss unit a distributed batch is
weighted by comes from each part's format handler. The opt-in speed settings: train.cache_frozen_layers runs
each training forward inside the frozen-layer cache (frozen.py), train.compile runs it compiled."""
from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from .. import interrupts
from ..checkpoint import Checkpoints, TrainState, rng_state
from ..distributed import Processes, processes
from ..errors import StepstoneError
from ..evaluation import predict
from ..formats import FormatHandler
from ..methods import backbone_dropout_off
from ..precision import autocast, frozen_linears_lowered, grad_scaler
from ..progress import ProgressFactory, silent
from ..specs import TrainSpec
from ..tasks.base import TaskSpec
from .batches import _batches, schedule
from .frozen import FrozenLayerCache, one_process_cache
from .modes import Trainable, TrainingMode, param_groups
from .resume import replay, restore


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    best_epoch: int = 0
    dev_metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    log: list[dict] = field(default_factory=list)  # per optimizer step and per dev evaluation


@dataclass(frozen=True)
class TaskData:
    """One task of a run: its head, encoded training rows, and dev examples + rows for selection."""

    task: TaskSpec
    handler: FormatHandler
    head: str
    rows: list[dict]
    dev_examples: list[dict]
    dev_rows: list[dict]


@dataclass
class _Run:
    """What the steps of one `train` call share: its inputs, the optimizer and its companions, the result
    so far, the best epoch's state, and whether some process received a signal."""

    model: Any
    forward: Any  # the model, wrapped in DDP across launched processes
    parts: list[TaskData]
    tokenizer: Any
    spec: TrainSpec
    mode: TrainingMode
    trainable: Trainable
    params: dict[str, Any]
    optimizer: Any
    clipped: list[Any]  # the parameters whose gradient norm is clipped, in group order
    scheduler: Any
    scaler: Any
    generator: torch.Generator
    device: Any
    procs: Processes
    checkpoints: Checkpoints | None
    sink: Callable[[dict], None] | None
    progress: ProgressFactory
    planned: int  # optimizer steps of the whole run
    result: TrainResult = field(default_factory=TrainResult)
    best_value: float = -math.inf
    best_state: dict | None = None
    started: float = 0.0
    vote: bool = False  # some process received a signal (they agree on it: see procs.sum)
    bar: Any = None
    cache: FrozenLayerCache | None = None  # train.cache_frozen_layers

    def emit(self, record: dict) -> None:
        self.result.log.append(record)
        if self.sink is not None:
            self.sink(record)


def train(model: Any, parts: list[TaskData], tokenizer: Any, spec: TrainSpec, mode: TrainingMode,
          trainable: Trainable, progress: ProgressFactory = silent, sink: Callable[[dict], None] | None = None,
          checkpoints: Checkpoints | None = None, resume: bool = False) -> TrainResult:
    """Train the `trainable` parameters on every part's rows (batches mixed by `schedule`); select the
    best epoch on the parts' dev sets (mean of their main metrics) when `spec.select_best`. `spec`
    must be resolved. Every step's loss and learning rate and every dev evaluation go to `result.log`
    and, live, to `sink` (e.g. TensorBoard). With `checkpoints`, the state is saved every
    `checkpoints.every` optimizer steps; `resume` continues from the latest one exactly (the same
    batches, dropout masks and updates as an uninterrupted run). A non-finite loss or gradient norm
    stops training with the step it happened at; the last checkpoint stays. SIGINT / SIGTERM stop it
    after the optimizer step in progress (every process at the same step), with a checkpoint of that
    step when checkpoints are on, by raising `interrupts.Interrupted`."""
    run = _start(model, parts, tokenizer, spec, mode, trainable, progress, sink, checkpoints)
    resumed = checkpoints.load(run.procs.world) if resume and checkpoints is not None else None
    if resumed is not None:
        _resume(run, resumed)
    streams = [_batches(p, spec.batch_size, run.generator, spec.group_by_length) for p in parts]
    run.started = time.perf_counter() - (resumed.seconds if resumed else 0.0)
    batches = [math.ceil(len(p.rows) / spec.batch_size) for p in parts]
    with progress(f"train {'+'.join(p.task.name for p in parts)}", run.planned) as run.bar, \
            frozen_linears_lowered(model, spec.precision), \
            (nullcontext() if spec.backbone_dropout else backbone_dropout_off(model)), interrupts.deferred():
        run.bar.advance(run.result.steps)
        for epoch in range(1, spec.epochs + 1):
            _epoch(run, epoch, batches, streams, resumed)
    return _finish(run)


def _start(model: Any, parts: list[TaskData], tokenizer: Any, spec: TrainSpec, mode: TrainingMode,
           trainable: Trainable, progress: ProgressFactory, sink: Callable[[dict], None] | None,
           checkpoints: Checkpoints | None) -> _Run:
    """The optimizer over the mode's parameter groups, its linear warmup schedule, the fp16 loss scaler,
    the seeded batch generator and the processes."""
    params = dict(model.named_parameters())
    groups = param_groups(mode, trainable.names, params, spec)
    optimizer = torch.optim.AdamW(groups, weight_decay=spec.weight_decay)
    steps_per_epoch = sum(math.ceil(len(p.rows) / spec.batch_size) for p in parts)
    total = math.ceil(steps_per_epoch / spec.grad_accum) * spec.epochs
    scheduler = _linear_schedule(optimizer, int(spec.warmup_ratio * total), total)
    generator = torch.Generator().manual_seed(spec.seed)
    device = next(model.parameters()).device
    scaler = grad_scaler(spec.precision, device)
    # fp16 loss scaling skips steps whose gradients overflowed (the first ones, while the scale settles);
    # the scheduler still steps, which torch reports as a misordered call
    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
    if spec.grad_checkpointing:
        enable_grad_checkpointing(model)
    procs = processes()
    cache = _frozen_layer_cache(model, spec, procs)
    forward = procs.wrap(model)  # DDP first, then compile (torch's order: DDP's buckets see the compiled graph)
    return _Run(model=model, forward=_compiled(forward) if spec.compile else forward, cache=cache, parts=parts,
                tokenizer=tokenizer, spec=spec, mode=mode, trainable=trainable, params=params, optimizer=optimizer,
                clipped=[p for g in groups for p in g["params"]], scheduler=scheduler, scaler=scaler,
                generator=generator, device=device, procs=procs, checkpoints=checkpoints, sink=sink,
                progress=progress, planned=total)


def _resume(run: _Run, state: TrainState) -> None:
    """Continue from a checkpoint: its weights and optimizer state, the result so far and the best epoch."""
    restore(state, run.params, run.trainable.names, run.optimizer, run.scheduler, run.scaler)
    run.result.history, run.result.log, run.result.steps = state.history, state.log, state.step
    run.result.best_epoch, run.best_state = state.best_epoch, state.best_state
    run.best_value = -math.inf if state.best_value is None else state.best_value


def _epoch(run: _Run, epoch: int, batches: list[int], streams: list[Iterator[list[dict]]],
           resumed: TrainState | None) -> None:
    """One epoch: its batch order, each micro-batch, an optimizer update every `grad_accum` of them (and
    at the epoch's end), then the epoch's record with its dev evaluation."""
    run.model.train()
    plan = schedule(batches, [len(p.rows) for p in run.parts], run.spec, run.generator)
    start = replay(resumed, epoch, plan, streams, run.generator, run.procs.rank)
    if start is None:  # finished before the checkpoint this run resumed from
        return
    first, losses = start
    pending: list[tuple[str, float]] = []
    for b, which in enumerate(plan[first:], start=first):
        part = run.parts[which]
        update = (b + 1) % run.spec.grad_accum == 0 or b + 1 == len(plan)
        value = _micro_batch(run, part, next(streams[which]), update, epoch)
        losses.append(value)
        pending.append((part.task.name, value))
        if update:
            _update(run, epoch, b + 1, losses, pending)
            pending = []
    run.result.history.append(_evaluate(run, epoch, losses))


def _micro_batch(run: _Run, part: TaskData, rows: list[dict], update: bool, epoch: int) -> float:
    """Forward and backward of one micro-batch (this process's share of `rows`); gradients are synced
    across processes only on an update. Returns the loss value of the whole batch."""
    mine = run.procs.shard(rows)
    batch = part.handler.collate(mine or rows[:1], run.tokenizer)  # a share too small: weight 0
    with (nullcontext() if update else run.procs.no_sync(run.forward)):
        with autocast(run.spec.precision, run.device), \
                (nullcontext() if run.cache is None else run.cache.feeding(mine, batch)):
            output = _forward(run, {k: v.to(run.device) for k, v in batch.items()}, part.head)
        loss, value = _weighted(run, part, batch, output.loss.float(), bool(mine))
        if run.mode.extra_loss is not None:
            extra = run.mode.extra_loss(run.model)
            loss, value = loss + extra, value + extra.item()
        if not math.isfinite(value):
            raise _diverged(f"loss is {value}", run.result.steps + 1, epoch, run.checkpoints)
        run.scaler.scale(loss / run.spec.grad_accum).backward()
    return value


def _forward(run: _Run, batch: dict, head: str) -> Any:
    """The training forward; a torch.compile failure (train.compile) becomes one line."""
    if not run.spec.compile:
        return run.forward(**batch, head=head)
    from torch._dynamo.exc import TorchDynamoException

    try:
        return run.forward(**batch, head=head)
    except TorchDynamoException as err:
        raise _compile_failed(err) from err


def _compiled(forward: Any) -> Any:
    """train.compile: torch.compile of the training forward (the model, or its DDP wrapper). dynamic=True:
    batches differ in length. Evaluation, checkpoints and saving use the original model, so state_dict names
    carry no `_orig_mod.` prefix."""
    try:
        return torch.compile(forward, dynamic=True)
    except Exception as err:  # e.g. a Python version torch.compile does not support
        raise _compile_failed(err) from err


def _compile_failed(err: Exception) -> StepstoneError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return StepstoneError(f"train.compile: torch.compile failed ({type(err).__name__}: {first[:200]}); "
                          f"set train.compile=false to train without it")


def _frozen_layer_cache(model: Any, spec: TrainSpec, procs: Processes) -> FrozenLayerCache | None:
    """train.cache_frozen_layers: the cache of the model's frozen bottom (one process only)."""
    if not spec.cache_frozen_layers:
        return None
    if procs.world > 1:
        raise one_process_cache(procs.world)
    return FrozenLayerCache.of(model)


def _weighted(run: _Run, part: TaskData, batch: dict, loss: Any, mine: bool) -> tuple[Any, float]:
    """The loss to backpropagate and the whole batch's loss value. Across processes each share is weighted
    by its loss units (the format handler's), so the update is the whole batch's."""
    if run.procs.world == 1:
        return loss, loss.item()
    units = part.handler.loss_units(batch) if mine else 0
    # the signal vote rides on the all-reduce every micro-batch makes anyway
    total, weighted, votes = run.procs.sum(units, loss.item() * units, float(interrupts.received() is not None))
    run.vote = votes > 0
    return loss * (units * run.procs.world / total), weighted / total


def _update(run: _Run, epoch: int, batch: int, losses: list[float], pending: list[tuple[str, float]]) -> None:
    """One optimizer step (gradients clipped; fp16: unscaled, skipped on overflow), its log record, the
    checkpoint when due, and the stop when a signal arrived. `batch`: the epoch's batches done."""
    run.scaler.unscale_(run.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(run.clipped, run.spec.max_grad_norm)
    if not run.scaler.is_enabled() and not torch.isfinite(norm):  # fp16: the scaler skips the step
        raise _diverged(f"the gradient norm is {norm.item()}", run.result.steps + 1, epoch, run.checkpoints)
    run.scaler.step(run.optimizer)  # skipped when fp16 gradients overflowed; the scale is then lowered
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.result.steps += 1
    run.emit({"kind": "step", "step": run.result.steps, "epoch": epoch, "lr": run.scheduler.get_last_lr()[0],
              "loss": sum(v for _, v in pending) / len(pending), "tasks": sorted({t for t, _ in pending})})
    run.bar.advance(1, f"epoch {epoch} loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    stop = run.vote if run.procs.world > 1 else interrupts.received() is not None
    checkpoints = run.checkpoints
    if checkpoints is not None and (checkpoints.due(run.result.steps) or (stop and checkpoints.every > 0)):
        _checkpoint(run, epoch, batch, losses)
    if stop:
        raise _interrupted(run.result.steps, run.planned, epoch, checkpoints, run.procs)


def _checkpoint(run: _Run, epoch: int, batch: int, losses: list[float]) -> None:
    """Save the state after this optimizer step (the first process writes; every one waits for it)."""
    ranks = run.procs.gather(torch.get_rng_state())  # each process's dropout stream
    if run.procs.primary:
        result = run.result
        run.checkpoints.save(TrainState(
            step=result.steps, epoch=epoch, batch=batch,
            params={n: run.params[n] for n in run.trainable.names}, optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(),
            rng={**rng_state(run.generator), **{f"cpu.{r}": t for r, t in enumerate(ranks) if r}},
            losses=losses, history=result.history, log=result.log, best_epoch=result.best_epoch,
            best_value=None if run.best_value == -math.inf else run.best_value, best_state=run.best_state,
            seconds=time.perf_counter() - run.started, processes=run.procs.world))
    run.procs.barrier()


def _evaluate(run: _Run, epoch: int, losses: list[float]) -> dict[str, Any]:
    """The epoch's record: its mean training loss and, when due, the dev scores of every part; keeps the
    trainable weights of the best epoch so far (mean of the parts' main metrics) when selecting."""
    spec, parts = run.spec, run.parts
    record: dict[str, Any] = {"epoch": epoch, "step": run.result.steps, "train_loss": sum(losses) / len(losses)}
    if spec.dev and (spec.select_best or epoch == spec.epochs):
        scores = [_dev_score(run.model, p, run.tokenizer, spec, run.procs, run.progress) for p in parts]
        record["dev"] = scores[0]
        if len(parts) > 1:
            record["dev_by_task"] = {p.task.name: s for p, s in zip(parts, scores)}
        run.emit({"kind": "dev", "step": run.result.steps, "epoch": epoch,
                  "dev": {p.task.name: s for p, s in zip(parts, scores)}})
        value = sum(s[p.task.metric.main] for p, s in zip(parts, scores)) / len(parts)
        if spec.select_best and value > run.best_value:
            run.best_value, run.result.best_epoch = value, epoch
            run.best_state = {n: run.params[n].detach().clone() for n in run.trainable.names}
    return record


def _finish(run: _Run) -> TrainResult:
    """Put the best epoch's weights back (when it was not the last) and complete the result."""
    result, spec = run.result, run.spec
    if run.best_state is not None and result.best_epoch != spec.epochs:
        with torch.no_grad():
            for name, value in run.best_state.items():
                run.params[name].copy_(value)
    if not spec.select_best:
        result.best_epoch = spec.epochs
    result.dev_metrics = result.history[result.best_epoch - 1].get("dev", {})
    result.seconds = time.perf_counter() - run.started
    run.model.eval()
    return result


def _dev_score(model: Any, part: TaskData, tokenizer: Any, spec: TrainSpec, procs: Processes,
               progress: ProgressFactory = silent) -> dict[str, float]:
    """Dev metrics of one task: each process predicts its share of the rows, the outputs are gathered,
    and every process scores the whole set (so all select the same best epoch)."""
    mine = list(range(procs.rank, len(part.dev_rows), procs.world))
    outputs = predict(model, part.handler, [part.dev_rows[i] for i in mine], tokenizer, spec.eval_batch_size,
                      progress, f"dev {part.task.name} [{part.task.train_language}]", head=part.head,
                      precision=spec.precision)
    ordered: list[Any] = [None] * len(part.dev_rows)
    for indexes, values in zip(procs.gather(mine), procs.gather(outputs)):
        for i, value in zip(indexes, values):
            ordered[i] = value
    return part.handler.score(part.dev_examples, part.dev_rows, ordered, part.task, part.task.train_language)


def _interrupted(step: int, planned: int, epoch: int, checkpoints: Checkpoints | None,
                 procs: Processes) -> interrupts.Interrupted:
    where = f"at step {step} of {planned} (epoch {epoch})"
    if checkpoints is None:
        saved = "nothing saved"
    elif checkpoints.every:
        saved = f"saved the checkpoint {checkpoints.folder / f'step-{step:07d}'}"
    else:  # checkpoints off: an earlier run's (resumed with checkpoint_every=0) may still be there
        saved = "nothing saved (train.checkpoint_every=0)" + \
            (f"; {checkpoints.describe_latest()}" if checkpoints.latest() is not None else "")
    signum = interrupts.received() or interrupts.SIGNALS[1]  # only another process got one: say SIGTERM
    return interrupts.Interrupted(signum, f"{where}: {saved}", resumable=checkpoints is not None and
                                  checkpoints.latest() is not None, primary=procs.primary)


def _diverged(what: str, step: int, epoch: int, checkpoints: Checkpoints | None) -> StepstoneError:
    kept = checkpoints.describe_latest() if checkpoints is not None else "no checkpoints were kept"
    return StepstoneError(f"training diverged: {what} at step {step} (epoch {epoch}); {kept}; "
                          f"lower train.lr or check the data")


def enable_grad_checkpointing(model: Any) -> None:
    """Recompute each layer's activations in backward. Non-reentrant checkpointing also gives gradients
    to adapters inside a frozen backbone (the reentrant kind needs an input that requires grad)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise StepstoneError(f"{type(model).__name__} does not support gradient checkpointing")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup, max(total, 1))
