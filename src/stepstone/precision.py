"""Mixed precision: autocast to bf16 / fp16 around forward passes, loss scaling for fp16, and the frozen
backbone's linear weights held in the autocast dtype while autocast runs."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, ContextManager, Iterator

import torch

from .specs import Precision

DTYPES = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


def autocast(precision: Precision, device: torch.device) -> ContextManager:
    """Autocast for `precision` on `device` (no-op for fp32)."""
    if precision is Precision.FP32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: Precision, device: torch.device) -> Any:
    """A loss scaler for fp16 (gradients of small losses underflow in fp16); disabled otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision is Precision.FP16)


@contextmanager
def frozen_linears_lowered(model: Any, precision: Precision) -> Iterator[int]:
    """Hold the frozen fp32 weights and biases of the model's linear layers in the autocast dtype inside
    the block; the originals are put back, bitwise, on exit. Yields how many tensors were lowered.

    Autocast casts a linear layer's fp32 weight to bf16/fp16 on every call and caches the cast only for
    weights that require grad, so a frozen backbone was re-cast in every forward pass (7% of a bf16
    training step on e5-small). Casting once is exact: these are the values autocast would have used.
    Every forward pass in the block must run under `autocast(precision)`. Trainable, quantised
    (non-float) and shared weights (e.g. tied to an embedding) stay as they are."""
    if precision is Precision.FP32:
        yield 0
        return
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    others = {id(p) for m in model.modules() if not isinstance(m, torch.nn.Linear) for p in m.parameters(recurse=False)}
    dtype, originals = DTYPES[precision], []
    for module in linears:
        if module.weight.dtype != torch.float32:  # quantised (bitsandbytes) or already lowered
            continue
        for param in module.parameters(recurse=False):
            if param.dtype == torch.float32 and not param.requires_grad and id(param) not in others:
                originals.append((param, param.data))
                param.data = param.data.to(dtype)
    try:
        yield len(originals)
    finally:
        for param, data in originals:
            param.data = data
