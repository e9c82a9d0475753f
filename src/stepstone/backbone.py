"""Load the frozen encoder: the built-in `tiny`, a local directory, or a hub id.

The only place that calls transformers' Auto* classes. The model comes back as an adapters-library
model with flexible heads (adapters, fusion layers and heads are added to it by the pipeline).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import StepstoneError
from .specs import TINY, BackboneSpec, Quantize

DEFAULT_REAL = "xlm-roberta-large"  # the paper's backbone
# The tiny backbone's shape: small enough that the whole demo trains in seconds on 2 CPU cores.
# A random encoder with the usual init (std 0.02) passes almost nothing to the <s> token, so
# sentence-level adapters on it cannot learn; std 0.1 gives frozen random features they can use.
TINY_SHAPE = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                  initializer_range=0.1)
TINY_INIT_SEED = 1234


@dataclass
class Backbone:
    """A loaded encoder. `fingerprint` identifies the weights adapters were trained on; `source` says
    where they came from (stepstone.provenance.backbone_source: None for tiny)."""

    model: Any
    tokenizer: Any
    spec: BackboneSpec
    fingerprint: str
    num_parameters: int  # backbone parameters before any adapter or head is added
    source: dict | None = None

    @property
    def description(self) -> str:
        c = self.model.config
        return (f"{self.spec.name} ({c.model_type}, {c.num_hidden_layers} layers x {c.hidden_size}, "
                f"{self.num_parameters / 1e6:.1f}M params)")

    @property
    def max_tokens(self) -> int:
        """The longest input the position embeddings cover: max_position_embeddings, less the offset
        RoBERTa-family models (XLM-R) start their positions at (padding_idx + 1: 514 -> 512 tokens)."""
        return self.model.config.max_position_embeddings - self._position_offset

    @property
    def _position_offset(self) -> int:
        padding = getattr(self.model.base_model.embeddings, "padding_idx", None)
        return padding + 1 if padding is not None else 0

    def check_max_length(self, max_length: int, what: str = "train.max_length") -> None:
        """Refuse a length the position embeddings do not cover: the first longer example would crash
        inside the model, possibly hours into a run."""
        if max_length > self.max_tokens:
            offset = f", positions start at {self._position_offset}" if self._position_offset else ""
            raise StepstoneError(f"{what} is {max_length}, but backbone '{self.spec.name}' takes at most "
                                 f"{self.max_tokens} tokens (max_position_embeddings "
                                 f"{self.model.config.max_position_embeddings}{offset}): set {what} to "
                                 f"{self.max_tokens} or less")


def load_backbone(spec: BackboneSpec) -> Backbone:
    """Load `spec`; a missing directory or unreachable hub id raises one clear StepstoneError."""
    from .methods import quiet_libraries

    quiet_libraries()  # before bitsandbytes / adapters are imported: they log at import
    quiet = logging.getLogger("transformers.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "some weights were not initialised" (the unused pooler) is expected
    try:
        if spec.name == TINY:
            model, tokenizer = _tiny(spec.attention.value)
            if spec.quantize is not Quantize.NONE:  # bitsandbytes quantises while loading: go through a folder
                model = _tiny_quantized(model, tokenizer, spec)
        else:
            model, tokenizer = _pretrained(spec)
    finally:
        quiet.setLevel(level)
    if spec.quantize is Quantize.NONE:
        model.to(device())
    model.eval()
    from .provenance import backbone_source

    # transformers records the hub commit it loaded from (None for local folders)
    source = backbone_source(spec.name, spec.revision, getattr(model.config, "_commit_hash", None))
    return Backbone(model, tokenizer, spec, fingerprint(model, tokenizer), count_parameters(model), source)


def device() -> torch.device:
    """Where models run: $STEPSTONE_DEVICE if set (cpu, cuda, cuda:1), else the GPU when there is one (under
    `accelerate launch` / torchrun: this process's GPU, $LOCAL_RANK)."""
    import os

    gpu = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    name = os.environ.get("STEPSTONE_DEVICE") or (gpu if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise StepstoneError(f"STEPSTONE_DEVICE='{name}' is not a device (valid: cpu, cuda, cuda:N)") from None


def count_parameters(model: Any) -> int:
    """Parameters as the unquantised model has them: a 4-bit weight stores two values per byte, its
    `quant_state` keeps the real shape."""
    total = 0
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        total += int(torch.Size(state.shape).numel()) if state is not None else p.numel()
    return total


def quantization_config(quantize: Quantize) -> Any:
    """bitsandbytes settings: NF4 with double quantisation and bf16 compute (QLoRA), or LLM.int8()."""
    from transformers import BitsAndBytesConfig

    if quantize is Quantize.NF4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def _quantized_kwargs(spec: BackboneSpec) -> dict:
    if spec.quantize is Quantize.NONE:
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:  # pragma: no cover - a dependency, but its native library may fail to load
        raise StepstoneError(f"--quantize {spec.quantize.value} needs bitsandbytes, which failed to import "
                             f"({str(err).splitlines()[0][:200]})") from None
    # dtype: the modules bitsandbytes leaves alone (embeddings, LayerNorm) stay fp32, as do the adapters
    # added later (transformers would otherwise load them in fp16)
    return {"quantization_config": quantization_config(spec.quantize), "device_map": {"": str(device())},
            "dtype": torch.float32}


def _tiny_quantized(model: Any, tokenizer: Any, spec: BackboneSpec) -> Any:
    import tempfile

    from .methods import model_from_pretrained, wrap_quantized_for_lora

    with tempfile.TemporaryDirectory(prefix="stepstone-tiny-") as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        with torch.random.fork_rng():
            torch.manual_seed(TINY_INIT_SEED)
            model = model_from_pretrained(folder, attn_implementation=spec.attention.value, **_quantized_kwargs(spec))
    wrap_quantized_for_lora(model)
    return model


def _tiny(attention: str = "sdpa") -> tuple[Any, Any]:
    from transformers import XLMRobertaConfig

    from .methods import model_from_config
    from .tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=514, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **TINY_SHAPE,
    )
    with torch.random.fork_rng():  # same random weights every time, without touching the caller's RNG
        torch.manual_seed(TINY_INIT_SEED)
        model = model_from_config(config, attn_implementation=attention)
    return model, tokenizer


def _pretrained(spec: BackboneSpec) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from .methods import model_from_pretrained, wrap_quantized_for_lora

    path = Path(spec.name).expanduser()
    local = path.is_dir()
    looks_like_path = spec.name.startswith((".", "/", "~")) or spec.name.count("/") > 1
    if not local and (path.exists() or looks_like_path):
        raise StepstoneError(
            f"backbone '{spec.name}' is not a model directory (expected a folder with config.json); "
            f"use '{TINY}', a local model directory or a hub id such as '{DEFAULT_REAL}'"
        )
    if local and not (path / "config.json").is_file():
        raise StepstoneError(f"backbone directory '{path}' has no config.json: not a transformers model folder")
    source = str(path) if local else spec.name
    kwargs = {} if local or spec.revision is None else {"revision": spec.revision}
    try:
        # transformers 4.57.3+ warns about a Mistral regex for any local folder whose config names
        # a 4.57.3-4.x version; XLM-R tokenizers are not affected, so say so explicitly.
        tokenizer = AutoTokenizer.from_pretrained(source, fix_mistral_regex=False, **kwargs)
        with torch.random.fork_rng():  # weights missing from the checkpoint (pooler) init the same way
            torch.manual_seed(TINY_INIT_SEED)
            model = model_from_pretrained(source, attn_implementation=spec.attention.value, **kwargs,
                                          **_quantized_kwargs(spec))
        if spec.quantize is not Quantize.NONE:
            wrap_quantized_for_lora(model)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StepstoneError(
            f"cannot load backbone '{spec.name}': not '{TINY}', not a local directory, and the hub "
            f"did not provide it ({reason[:200]})"
        ) from None
    if not tokenizer.is_fast:
        raise StepstoneError(f"backbone '{spec.name}' has no fast tokenizer (offsets are needed for QA and tagging)")
    return model, tokenizer


def fingerprint(model: Any, tokenizer: Any) -> str:
    """A short hash of the architecture, vocabulary and a sample of the (never quantised) embedding
    weights. Two backbones with the same config but different weights get different fingerprints;
    weights are rounded to bf16 first so fp32 and bf16 loads of the same checkpoint agree."""
    c = model.config
    arch = {k: getattr(c, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                              "num_attention_heads", "intermediate_size", "vocab_size")}
    h = hashlib.sha256(json.dumps(arch, sort_keys=True).encode())
    h.update(str(len(tokenizer)).encode())
    emb = model.base_model.embeddings
    for tensor in (emb.word_embeddings.weight[:64], emb.LayerNorm.weight):
        h.update(tensor.detach().to(torch.bfloat16).to(torch.float32).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@contextmanager
def training_layout_kept(model: Any) -> Iterator[int]:
    """Give every 4-bit layer its training-time weight back, bitwise, on exit; yields how many layers are kept.

    On a CPU with AVX512-BF16, bitsandbytes' Linear4bit repacks its weight for a faster inference kernel
    the first time it runs in eval mode without gradients (the layout of `_convert_weight_packed_for_cpu`:
    absmax de-nested and cast to bf16, `quant_state.packing_format_for_cpu = True`), and nothing unpacks it.
    From then on `matmul_4bit` takes that kernel (`gemv_4bit`) in training too; autograd does not see
    through it (no gradient reaches the layer's input) and its in-place bias add fails ("a view of a leaf
    Variable that requires grad is being used in an in-place operation"): the second epoch after a dev
    evaluation crashed. bitsandbytes' inverse is best-effort (it re-quantises absmax), so the original
    tensors are kept here and put back instead. 8-bit layers keep their layout; other models: a no-op."""
    bnb = sys.modules.get("bitsandbytes")  # not imported: no 4-bit layer can exist
    kept = []
    if bnb is not None:
        for module in model.modules():
            state = getattr(module.weight, "quant_state", None) if isinstance(module, bnb.nn.Linear4bit) else None
            if state is not None:  # the packing rewrites the state in place: keep a copy of its fields
                kept.append((module, module.weight.data, copy.copy(state)))
    try:
        yield len(kept)
    finally:
        for module, data, state in kept:
            if getattr(module.weight.quant_state, "packing_format_for_cpu", False):
                module.weight.data = data
                module.weight.quant_state = module.quant_state = state


def place(model: Any) -> None:
    """Move parameters added after loading (adapters, heads, fusion layers) to the backbone's device. A
    quantised backbone cannot be moved as a whole, so this moves only what is elsewhere."""
    target = device()
    with torch.no_grad():
        for module in model.modules():
            for key, param in module.named_parameters(recurse=False):
                if param.device != target:
                    module._parameters[key] = torch.nn.Parameter(param.to(target), requires_grad=param.requires_grad)
            for key, buffer in module.named_buffers(recurse=False):
                if buffer is not None and buffer.device != target:
                    module._buffers[key] = buffer.to(target)
