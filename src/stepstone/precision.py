"""Mixed precision: autocast to bf16 / fp16 around forward passes, loss scaling for fp16."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager

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

