"""Data-parallel training over several processes, launched by `accelerate launch` (or torchrun).

One process per GPU (or, for testing, per CPU with gloo). Every process builds the same model from the
same seed and draws the same batch order; each takes its share of every global batch (rows r, r+N, ...),
accelerate's DDP wrapper averages gradients, and every process takes the same optimizer step. Losses are
weighted by each share's loss units (labelled tokens, examples) so the update is the one a single process
computes on the whole batch. Only the primary process (rank 0) writes artifacts, checkpoints and logs.
Without a launcher this is one process and every call here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ContextManager

import torch


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    accelerator: Any = None  # accelerate.Accelerator when world > 1

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def shard(self, rows: list) -> list:
        """This process's rows of a global batch."""
        return rows[self.rank::self.world]

    def wrap(self, model: Any) -> Any:
        """The model as forward/backward should see it: DDP-wrapped across processes (gradients of the
        trainable parameters averaged in backward); the model itself in one process."""
        return model if self.world == 1 else self.accelerator.prepare_model(model, device_placement=False)

    def no_sync(self, wrapped: Any) -> ContextManager:
        """No gradient all-reduce inside (micro-batches before the last of an accumulated update)."""
        from contextlib import nullcontext

        return nullcontext() if self.world == 1 else self.accelerator.no_sync(wrapped)

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the processes (one all-reduce for all of them)."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(tensor, reduction="sum").tolist()

    def gather(self, value: Any) -> list:
        """`value` of every process, in rank order (any picklable object; in memory, between our processes)."""
        if self.world == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def barrier(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def processes() -> Processes:
    """This process's place among the launched ones (rank 0 of 1 without a launcher)."""
    if not launched():
        return Processes()
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # gloo between CPU processes when there is no GPU (accelerate would otherwise want MPI for CPUs);
    # find_unused_parameters: a multi-task step uses one task's head, the others get no gradient
    from accelerate.utils import DistributedType

    from .errors import StepstoneError

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no",
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if accelerator.distributed_type not in (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        raise StepstoneError(f"stepstone trains data-parallel (DDP); this launch asks for "
                             f"{accelerator.distributed_type.value}, which it does not support: use an accelerate "
                             f"config with distributed_type MULTI_GPU (see the README's 'Several GPUs')")
    return Processes(accelerator.process_index, accelerator.num_processes, accelerator)
