"""Resuming from a checkpoint: its weights and optimizer / scheduler / loss-scaler state put back, and the
batch order replayed up to where it stopped, so the rest of the run draws the same batches and dropout
masks as an uninterrupted one."""
from __future__ import annotations

from typing import Any, Iterator

import torch

from ..checkpoint import TrainState, set_rng_state
from ..errors import StepstoneError


def restore(state: TrainState, params: dict, names: frozenset[str], optimizer: Any, scheduler: Any,
            scaler: Any) -> None:
    """Put a checkpoint's weights and optimizer / scheduler / loss-scaler state back."""
    if set(state.params) != set(names):
        raise StepstoneError("the checkpoint's trainable parameters differ from this run's "
                             f"({len(set(state.params) ^ set(names))} names differ)")
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


def replay(state: TrainState | None, epoch: int, plan: list[int], streams: list[Iterator[list[dict]]],
           generator: torch.Generator, rank: int) -> tuple[int, list[float]] | None:
    """Where `epoch` (its batch order `plan`) starts: (its first batch to train, its losses so far), or None
    when the checkpoint `state` lies past it (the epoch is skipped). `state` None: a fresh run. The batches
    done before the checkpoint are drawn again from `streams` (no forward passes); in the checkpoint's own
    epoch the batch generator must then match the saved one, and the dropout streams are put back."""
    if state is None or epoch > state.epoch:
        return 0, []
    done = state.batch if epoch == state.epoch else len(plan)
    for which in plan[:done]:
        next(streams[which])
    if epoch < state.epoch:
        return None
    if not torch.equal(generator.get_state(), state.rng["batches"]):
        raise RuntimeError("resume: the replayed batch order does not match the checkpoint")
    set_rng_state(state.rng, rank)
    return done, list(state.losses)
