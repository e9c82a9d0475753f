"""ONE training loop for every mode. The mode is an explicit value; the trainable parameter set is
computed from it, applied, and asserted before the first step."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from .errors import StepstoneError
from .evaluation import score
from .formats import FormatHandler
from .methods import adapter_kind_of_parameter, fusion_regularization
from .progress import ProgressFactory, silent
from .specs import TrainSpec
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


def trainable_names(model: Any, mode: Mode, target: str, fusion: str | None = None) -> frozenset[str]:
    """Names of the parameters `mode` trains: computed from names, never from current requires_grad."""
    if mode is Mode.FULL:
        return frozenset(name for name, _ in model.named_parameters())
    owners = {("adapters", target), ("loras", target), ("heads", target)}
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


def train(model: Any, handler: FormatHandler, task: TaskSpec, tokenizer: Any, rows: list[dict],
          dev: tuple[list[dict], list[dict]], spec: TrainSpec, mode: Mode, trainable: Trainable,
          progress: ProgressFactory = silent) -> TrainResult:
    """Train the `trainable` parameters on encoded `rows`; select the best epoch on `dev`
    (examples, rows) by the task's main metric when `spec.select_best`. `spec` must be resolved."""
    params = dict(model.named_parameters())
    fusion_params = [params[n] for n in sorted(trainable.names) if adapter_kind_of_parameter(n)
                     and adapter_kind_of_parameter(n)[0] == "adapter_fusion_layer"]
    fusion_ids = {id(p) for p in fusion_params}
    other_params = [params[n] for n in sorted(trainable.names) if id(params[n]) not in fusion_ids]
    groups = [{"params": other_params, "lr": spec.lr}]
    if fusion_params:
        groups.append({"params": fusion_params, "lr": spec.fusion_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=spec.weight_decay)
    batches_per_epoch = math.ceil(len(rows) / spec.batch_size)
    updates_per_epoch = math.ceil(batches_per_epoch / spec.grad_accum)
    total = updates_per_epoch * spec.epochs
    scheduler = _linear_schedule(optimizer, int(spec.warmup_ratio * total), total)
    generator = torch.Generator().manual_seed(spec.seed)
    device = next(model.parameters()).device
    result, best_value, best_state = TrainResult(), -math.inf, None
    main = task.metric.main
    started = time.perf_counter()
    with progress(f"train {task.name}", total) as bar:
        for epoch in range(1, spec.epochs + 1):
            model.train()
            order = torch.randperm(len(rows), generator=generator).tolist()
            losses = []
            for b in range(batches_per_epoch):
                batch = handler.collate([rows[i] for i in order[b * spec.batch_size:(b + 1) * spec.batch_size]],
                                        tokenizer)
                output = model(**{k: v.to(device) for k, v in batch.items()})
                loss = output.loss
                if mode is Mode.FUSION:
                    loss = loss + fusion_regularization(model)
                if not torch.isfinite(loss):
                    raise StepstoneError(f"training diverged: loss is {loss.item()} at step {result.steps + 1} "
                                         f"(epoch {epoch}); lower train.lr or check the data")
                (loss / spec.grad_accum).backward()
                losses.append(loss.item())
                if (b + 1) % spec.grad_accum == 0 or b + 1 == batches_per_epoch:
                    torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], spec.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    result.steps += 1
                    bar.advance(1, f"epoch {epoch} loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
            record = {"epoch": epoch, "step": result.steps, "train_loss": sum(losses) / len(losses)}
            if spec.select_best or epoch == spec.epochs:
                record["dev"] = score(model, handler, task, dev[0], dev[1], tokenizer, spec.eval_batch_size,
                                      task.train_language)
                if spec.select_best and record["dev"][main] > best_value:
                    best_value, result.best_epoch = record["dev"][main], epoch
                    best_state = {n: params[n].detach().clone() for n in trainable.names}
            result.history.append(record)
    if best_state is not None and result.best_epoch != spec.epochs:
        with torch.no_grad():
            for name, value in best_state.items():
                params[name].copy_(value)
    if not spec.select_best:
        result.best_epoch = spec.epochs
    result.dev_metrics = result.history[result.best_epoch - 1]["dev"]
    result.seconds = time.perf_counter() - started
    model.eval()
    return result


def _linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup, max(total, 1))
