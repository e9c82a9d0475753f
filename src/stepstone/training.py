"""ONE training loop for every mode. The mode is an explicit value; the trainable parameter set is
computed from it, applied, and asserted before the first step."""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterator

import torch

from .errors import StepstoneError
from .evaluation import row_length, score
from .formats import FormatHandler
from .methods import adapter_kind_of_parameter, fusion_regularization
from .precision import autocast, grad_scaler
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
    owners = {("adapters", target), ("loras", target), *(("heads", h) for h in (heads or (target,)))}
    if mode is Mode.FUSION:
        if fusion is None:
            raise ValueError("FUSION mode needs the fusion layer's name")
        owners.add(("adapter_fusion_layer", fusion))
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
          progress: ProgressFactory = silent, sink: Callable[[dict], None] | None = None) -> TrainResult:
    """Train the `trainable` parameters on every part's rows (batches mixed by `schedule`); select the
    best epoch on the parts' dev sets (mean of their main metrics) when `spec.select_best`. `spec`
    must be resolved. Every step's loss and learning rate and every dev evaluation go to `result.log`
    and, live, to `sink` (e.g. TensorBoard)."""
    params = dict(model.named_parameters())

    def emit(record: dict) -> None:
        result.log.append(record)
        if sink is not None:
            sink(record)

    fusion_params = [params[n] for n in sorted(trainable.names)
                     if (adapter_kind_of_parameter(n) or ("",))[0] == "adapter_fusion_layer"]
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
    streams = [_batches(p, spec.batch_size, generator, spec.group_by_length) for p in parts]
    started = time.perf_counter()
    with progress(f"train {'+'.join(p.task.name for p in parts)}", total) as bar:
        for epoch in range(1, spec.epochs + 1):
            model.train()
            losses, pending = [], []
            plan = schedule(batches, [len(p.rows) for p in parts], spec, generator)
            for b, which in enumerate(plan):
                part = parts[which]
                batch = part.handler.collate(next(streams[which]), tokenizer)
                with autocast(spec.precision, device):
                    output = model(**{k: v.to(device) for k, v in batch.items()}, head=part.head)
                loss = output.loss.float()
                if mode is Mode.FUSION:
                    loss = loss + fusion_regularization(model)
                if not torch.isfinite(loss):
                    raise StepstoneError(f"training diverged: loss is {loss.item()} at step {result.steps + 1} "
                                         f"(epoch {epoch}); lower train.lr or check the data")
                scaler.scale(loss / spec.grad_accum).backward()
                losses.append(loss.item())
                pending.append((part.task.name, loss.item()))
                if (b + 1) % spec.grad_accum == 0 or b + 1 == len(plan):
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], spec.max_grad_norm)
                    scaler.step(optimizer)  # skipped when fp16 gradients overflowed; the scale is then lowered
                    scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    result.steps += 1
                    emit({"kind": "step", "step": result.steps, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                          "loss": sum(v for _, v in pending) / len(pending), "tasks": sorted({t for t, _ in pending})})
                    pending = []
                    bar.advance(1, f"epoch {epoch} loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
            record: dict[str, Any] = {"epoch": epoch, "step": result.steps, "train_loss": sum(losses) / len(losses)}
            if spec.dev and (spec.select_best or epoch == spec.epochs):
                scores = [score(model, p.handler, p.task, p.dev_examples, p.dev_rows, tokenizer, spec.eval_batch_size,
                                p.task.train_language, head=p.head, precision=spec.precision) for p in parts]
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
