"""ONE training loop for every mode. The mode is an explicit value; the trainable parameter set is
computed from it, applied, and asserted before the first step."""
from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterator

import torch

from . import interrupts
from .checkpoint import Checkpoints, TrainState, rng_state, set_rng_state
from .errors import StepstoneError
from .distributed import Processes, processes
from .evaluation import predict, row_length
from .formats import FormatHandler
from .methods import (FUSION_OWNER, adapter_kind_of_parameter, adapter_owners, backbone_dropout_off,
                      fusion_regularization)
from .precision import autocast, frozen_linears_lowered, grad_scaler
from .progress import ProgressFactory, silent
from .specs import Sampling, TrainSpec
from .tasks.base import TaskSpec


class Mode(str, Enum):
    """What is trained. ADAPTER: the target adapter + its head. FUSION: additionally the Fuse layer
    over frozen members. FULL: every weight of the backbone and the head."""

    ADAPTER = "adapter"
    FUSION = "fusion"
    FULL = "full"


@dataclass(frozen=True)
class Trainable:
    names: frozenset[str]
    count: int  # trainable parameters
    backbone: int  # parameters of the backbone alone

    @property
    def percent(self) -> float:
        return 100.0 * self.count / self.backbone

    def describe(self) -> str:
        return f"{self.count:,} trainable parameters ({self.percent:.2f}% of the backbone's {self.backbone:,})"


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


def trainable_names(model: Any, mode: Mode, target: str, fusion: str | None = None,
                    heads: tuple[str, ...] | None = None) -> frozenset[str]:
    """Names of the parameters `mode` trains: computed from names, never from current requires_grad.
    `heads` defaults to the head named like the target adapter."""
    if mode is Mode.FULL:
        return frozenset(name for name, _ in model.named_parameters())
    owners = {*((owner, target) for owner in adapter_owners()), *(("heads", h) for h in (heads or (target,)))}
    if mode is Mode.FUSION:
        if fusion is None:
            raise ValueError("FUSION mode needs the fusion layer's name")
        owners.add((FUSION_OWNER, fusion))
    return frozenset(n for n, _ in model.named_parameters() if adapter_kind_of_parameter(n) in owners)


def set_trainable(model: Any, names: frozenset[str], backbone_params: int) -> Trainable:
    """Freeze everything but `names` (other heads included: adapters' train_adapter leaves them
    trainable) and assert the result."""
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
        count += param.numel() if name in names else 0
    actual = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
    assert actual == names and names, f"trainable set mismatch: {sorted(actual ^ names)[:5]}"
    return Trainable(names, count, backbone_params)


def schedule(batches: list[int], examples: list[int], spec: TrainSpec, generator: torch.Generator) -> list[int]:
    """The task index of every step of one epoch (see Sampling). One task: its batches in order."""
    total = sum(batches)
    if len(batches) == 1:
        return [0] * total
    if spec.sampling is Sampling.PROPORTIONAL:
        steps = torch.tensor([i for i, n in enumerate(batches) for _ in range(n)])
        return steps[torch.randperm(total, generator=generator)].tolist()
    weights = torch.tensor(examples, dtype=torch.float64) ** (1.0 / spec.temperature)
    return torch.multinomial(weights / weights.sum(), total, replacement=True, generator=generator).tolist()


def train(model: Any, parts: list[TaskData], tokenizer: Any, spec: TrainSpec, mode: Mode, trainable: Trainable,
          progress: ProgressFactory = silent, sink: Callable[[dict], None] | None = None,
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
    params = dict(model.named_parameters())

    def emit(record: dict) -> None:
        result.log.append(record)
        if sink is not None:
            sink(record)

    fusion_params = [params[n] for n in sorted(trainable.names)
                     if (adapter_kind_of_parameter(n) or ("",))[0] == FUSION_OWNER]
    fusion_ids = {id(p) for p in fusion_params}
    other_params = [params[n] for n in sorted(trainable.names) if id(params[n]) not in fusion_ids]
    groups = [{"params": other_params, "lr": spec.lr}]
    if fusion_params:
        groups.append({"params": fusion_params, "lr": spec.fusion_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=spec.weight_decay)
    batches = [math.ceil(len(p.rows) / spec.batch_size) for p in parts]
    steps_per_epoch = sum(batches)
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
    result, best_value, best_state = TrainResult(), -math.inf, None
    procs = processes()
    forward = procs.wrap(model)  # DDP across launched processes; the model itself in one
    resumed = checkpoints.load(procs.world) if resume and checkpoints is not None else None
    if resumed is not None:
        _restore(resumed, params, trainable, optimizer, scheduler, scaler)
        result.history, result.log, result.steps = resumed.history, resumed.log, resumed.step
        result.best_epoch, best_state = resumed.best_epoch, resumed.best_state
        best_value = -math.inf if resumed.best_value is None else resumed.best_value
    streams = [_batches(p, spec.batch_size, generator, spec.group_by_length) for p in parts]
    started = time.perf_counter() - (resumed.seconds if resumed else 0.0)
    planned, vote = total, False  # vote: some process received a signal (they agree on it: see procs.sum)
    with progress(f"train {'+'.join(p.task.name for p in parts)}", total) as bar, \
            frozen_linears_lowered(model, spec.precision), \
            (nullcontext() if spec.backbone_dropout else backbone_dropout_off(model)), interrupts.deferred():
        bar.advance(result.steps)
        for epoch in range(1, spec.epochs + 1):
            model.train()
            losses, pending = [], []
            plan = schedule(batches, [len(p.rows) for p in parts], spec, generator)
            # a resumed run replays the batch order up to where it stopped (no forward passes)
            done = 0 if resumed is None or epoch > resumed.epoch else \
                resumed.batch if epoch == resumed.epoch else len(plan)
            for which in plan[:done]:
                next(streams[which])
            if resumed is not None and epoch == resumed.epoch:
                if not torch.equal(generator.get_state(), resumed.rng["batches"]):
                    raise RuntimeError("resume: the replayed batch order does not match the checkpoint")
                set_rng_state(resumed.rng, procs.rank)
                losses = list(resumed.losses)
            elif resumed is not None and epoch < resumed.epoch:
                continue
            for b, which in enumerate(plan[done:], start=done):
                part = parts[which]
                rows = next(streams[which])
                mine = procs.shard(rows)
                batch = part.handler.collate(mine or rows[:1], tokenizer)  # a share too small: weight 0
                update = (b + 1) % spec.grad_accum == 0 or b + 1 == len(plan)
                with (nullcontext() if update else procs.no_sync(forward)):
                    with autocast(spec.precision, device):
                        output = forward(**{k: v.to(device) for k, v in batch.items()}, head=part.head)
                    loss = output.loss.float()
                    if procs.world > 1:  # weight each share by its loss units: the update of the whole batch
                        units = loss_units(batch) if mine else 0
                        # the signal vote rides on the all-reduce every micro-batch makes anyway
                        total, weighted, votes = procs.sum(units, loss.item() * units,
                                                           float(interrupts.received() is not None))
                        vote = votes > 0
                        value = weighted / total
                        loss = loss * (units * procs.world / total)
                    else:
                        value = loss.item()
                    if mode is Mode.FUSION:
                        regularization = fusion_regularization(model)
                        loss, value = loss + regularization, value + regularization.item()
                    if not math.isfinite(value):
                        raise _diverged(f"loss is {value}", result.steps + 1, epoch, checkpoints)
                    scaler.scale(loss / spec.grad_accum).backward()
                losses.append(value)
                pending.append((part.task.name, value))
                if update:
                    scaler.unscale_(optimizer)
                    norm = torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], spec.max_grad_norm)
                    if not scaler.is_enabled() and not torch.isfinite(norm):  # fp16: the scaler skips the step
                        raise _diverged(f"the gradient norm is {norm.item()}", result.steps + 1, epoch, checkpoints)
                    scaler.step(optimizer)  # skipped when fp16 gradients overflowed; the scale is then lowered
                    scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    result.steps += 1
                    emit({"kind": "step", "step": result.steps, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                          "loss": sum(v for _, v in pending) / len(pending), "tasks": sorted({t for t, _ in pending})})
                    pending = []
                    bar.advance(1, f"epoch {epoch} loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
                    stop = vote if procs.world > 1 else interrupts.received() is not None
                    if checkpoints is not None and (checkpoints.due(result.steps) or (stop and checkpoints.every > 0)):
                        ranks = procs.gather(torch.get_rng_state())  # each process's dropout stream
                        if procs.primary:
                            checkpoints.save(TrainState(
                                step=result.steps, epoch=epoch, batch=b + 1,
                                params={n: params[n] for n in trainable.names}, optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                                rng={**rng_state(generator), **{f"cpu.{r}": t for r, t in enumerate(ranks) if r}},
                                losses=losses, history=result.history, log=result.log, best_epoch=result.best_epoch,
                                best_value=None if best_value == -math.inf else best_value, best_state=best_state,
                                seconds=time.perf_counter() - started, processes=procs.world))
                        procs.barrier()
                    if stop:
                        raise _interrupted(result.steps, planned, epoch, checkpoints, procs)
            record: dict[str, Any] = {"epoch": epoch, "step": result.steps, "train_loss": sum(losses) / len(losses)}
            if spec.dev and (spec.select_best or epoch == spec.epochs):
                scores = [_dev_score(model, p, tokenizer, spec, procs, progress) for p in parts]
                record["dev"] = scores[0]
                if len(parts) > 1:
                    record["dev_by_task"] = {p.task.name: s for p, s in zip(parts, scores)}
                emit({"kind": "dev", "step": result.steps, "epoch": epoch,
                      "dev": {p.task.name: s for p, s in zip(parts, scores)}})
                value = sum(s[p.task.metric.main] for p, s in zip(parts, scores)) / len(parts)
                if spec.select_best and value > best_value:
                    best_value, result.best_epoch = value, epoch
                    best_state = {n: params[n].detach().clone() for n in trainable.names}
            result.history.append(record)
    if best_state is not None and result.best_epoch != spec.epochs:
        with torch.no_grad():
            for name, value in best_state.items():
                params[name].copy_(value)
    if not spec.select_best:
        result.best_epoch = spec.epochs
    result.dev_metrics = result.history[result.best_epoch - 1].get("dev", {})
    result.seconds = time.perf_counter() - started
    model.eval()
    return result


def loss_units(batch: dict) -> int:
    """What a batch's loss averages over: labelled tokens for tagging (labels of shape batch x tokens,
    -100 = unlabelled), else examples (classification, multiple choice, QA features)."""
    labels = batch.get("labels")
    if labels is not None and labels.dim() == 2:
        return int((labels != -100).sum())
    return int(batch["input_ids"].shape[0])


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


def _restore(state: TrainState, params: dict, trainable: Trainable, optimizer: Any, scheduler: Any,
             scaler: Any) -> None:
    """Put a checkpoint's weights and optimizer / scheduler / loss-scaler state back."""
    if set(state.params) != set(trainable.names):
        raise StepstoneError("the checkpoint's trainable parameters differ from this run's "
                             f"({len(set(state.params) ^ set(trainable.names))} names differ)")
    wrong = sorted(n for n, value in state.params.items() if value.shape != params[n].shape)
    if wrong:
        raise StepstoneError(f"the checkpoint's {wrong[0]} has shape {list(state.params[wrong[0]].shape)}, this run's "
                             f"is {list(params[wrong[0]].shape)} ({len(wrong)} tensor(s) differ)")
    with torch.no_grad():
        for name, value in state.params.items():
            params[name].copy_(value)
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    if state.scaler:
        scaler.load_state_dict(state.scaler)


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


def _batches(part: TaskData, size: int, generator: torch.Generator, by_length: bool = False) -> Iterator[list[dict]]:
    """Endless batches of one task: a fresh random order on every pass over its rows; with `by_length`,
    rows of similar length share a batch (groups of GROUP_BATCHES batches sorted by length, batches shuffled)."""
    while True:
        order = torch.randperm(len(part.rows), generator=generator).tolist()
        if not by_length:
            for start in range(0, len(order), size):
                yield [part.rows[i] for i in order[start:start + size]]
            continue
        group = size * GROUP_BATCHES
        batches = []
        for start in range(0, len(order), group):
            chunk = sorted(order[start:start + group], key=lambda i: -row_length(part.rows[i]))
            batches += [chunk[b:b + size] for b in range(0, len(chunk), size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield [part.rows[i] for i in batches[b]]


GROUP_BATCHES = 50  # transformers' LengthGroupedSampler: megabatches of 50 batches


def _linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup, max(total, 1))
