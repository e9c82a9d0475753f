"""Adapter methods: one module per method, each registered once in `METHODS` (see base.py), plus the
adapters-library glue shared by all of them (engine.py).

Adding a method: a new module next to bottleneck.py that defines its settings dataclass and calls
`register(Method(...))`, and one import line below.
"""
# The registration lines: importing a method module registers it (this order is the order manifests'
# schema lists the methods in).
from . import bottleneck, lora, full, houlsby, ia3  # noqa: F401,I001
from .base import METHODS, Family, Method, MethodName, method_of, register
from .bottleneck import BottleneckSpec, NonLinearity
from .engine import (FUSION_OWNER, LORA_FUSION_OWNER, activate, adapter_config, adapter_kind_of_parameter, adapter_owners, add_adapter,
                     add_fusion, backbone_dropout_off, check_fits, fusion_name, fusion_regularization, load_adapter,
                     load_fusion, load_head, model_from_config, model_from_pretrained, quiet_libraries, remove_adapter, save_adapter,
                     save_fusion, wrap_quantized_for_lora)
from .houlsby import HoulsbySpec
from .ia3 import IA3Spec
from .lora import LoRASpec, LoRATarget

__all__ = [
    "METHODS", "Family", "Method", "MethodName", "method_of", "register", "BottleneckSpec", "NonLinearity",
    "HoulsbySpec", "IA3Spec", "LoRASpec", "LoRATarget", "FUSION_OWNER", "LORA_FUSION_OWNER", "activate", "adapter_config", "adapter_kind_of_parameter",
    "adapter_owners", "add_adapter", "add_fusion", "backbone_dropout_off", "check_fits", "fusion_name",
    "fusion_regularization", "load_adapter", "load_fusion", "load_head", "model_from_config",
    "model_from_pretrained", "quiet_libraries", "remove_adapter", "save_adapter", "save_fusion", "wrap_quantized_for_lora",
]
