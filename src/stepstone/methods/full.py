"""Full fine-tuning: every backbone weight trains (the paper's setting, Phang et al. 2020)."""
from __future__ import annotations

from .base import Family, Method, register

FULL = register(Method(
    name="full", family=Family.FULL, settings=None, adapter_config=None, owners=(), default_lr=1e-5,
    composes=False, train_mode="full", doc="every backbone weight trainable (Phang et al. 2020)"))
