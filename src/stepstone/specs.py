"""The typed, frozen values a run is made of: backbone, method, composition, training.

Everything a user can set lives here, with its default and where the default comes from. Configs are
loaded from YAML plus dotted overrides by `stepstone.config`; unknown keys are errors there.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from .methods.base import METHODS, Family, Method, MethodName

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # \Z: "$" also matches before a final newline
NAME_RULE = "1-64 letters, digits, '-' or '_', starting with a letter or digit"
TINY = "tiny"  # the built-in random XLM-R backbone (stepstone.tiny), built offline from a config


def check_name(name: str, what: str = "name") -> str:
    """Zoo entry, run and adapter names double as folder names and adapter keys (which may not hold
    '.' or ','), so they are restricted; this also rules out path traversal such as '../x'."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"invalid {what} '{name}': use {NAME_RULE}")
    return name


class Sampling(str, Enum):
    """How a multi-task run picks the task of each batch.

    proportional: every batch of every task once per epoch, in random order (a task's share of steps is
    its share of examples). temperature: tasks drawn with probability n_i^(1/T) / sum_j n_j^(1/T), which
    flattens the mixture as T grows (T=1 is proportional in expectation); an epoch has as many steps as
    all tasks' batches together, smaller tasks cycling."""

    PROPORTIONAL = "proportional"
    TEMPERATURE = "temperature"


class Quantize(str, Enum):
    """How the frozen backbone's linear weights are stored (bitsandbytes); adapters, heads and fusion
    layers always stay in full precision."""

    NONE = "none"
    INT8 = "8bit"  # LLM.int8() (Linear8bitLt)
    NF4 = "4bit"  # NF4 with double quantisation, bf16 compute (QLoRA's setting, Dettmers et al. 2023)


class Precision(str, Enum):
    """Arithmetic of forward and backward passes: fp32, or autocast to bf16 / fp16 (fp16 with loss scaling).
    Weights that train stay fp32 (mixed precision)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Block(str, Enum):
    """How zoo adapters are composed under a new target adapter (see stepstone.composition: what each block
    means for each method family, its training mode and setups). min_members: the fewest members it takes;
    weighted: whether it takes member weights (`Average(a=0.7, b=0.3)`)."""

    STACK = ("stack", 1)
    FUSE = ("fuse", 2)
    AVERAGE = ("average", 2, True)

    def __new__(cls, value: str, min_members: int, weighted: bool = False) -> "Block":
        member = str.__new__(cls, value)
        member._value_ = value
        member.min_members = min_members
        member.weighted = weighted
        return member


class Attention(str, Enum):
    """How self-attention is computed (transformers' attn_implementation)."""

    SDPA = "sdpa"
    EAGER = "eager"


@dataclass(frozen=True)
class BackboneSpec:
    """Which pretrained encoder to adapt.

    name: 'tiny' (random XLM-R built offline, for tests and the smoke demo), a local directory
    holding a transformers model, or a hub id. Real runs default to 'xlm-roberta-large' (the paper's).
    revision: hub revision (branch, tag or commit); recorded in every manifest.
    quantize: none | 8bit | 4bit: load the frozen backbone's linear layers through bitsandbytes
        (adapter methods only: a full fine-tune trains those weights).
    attention: sdpa (transformers' default: torch's fused scaled_dot_product_attention) | eager (matmul +
        softmax + dropout). The same function up to float rounding; on a CPU with short sentences eager is
        faster, and with the backbone's dropout off SDPA takes a fused CPU kernel that is slower still.
    """

    name: str = TINY
    revision: str | None = None
    quantize: Quantize = Quantize.NONE
    attention: Attention = Attention.SDPA


class MethodSpec:
    """The adaptation method: `kind` is a registered method name (`stepstone.methods.METHODS`);
    each method with settings has its block (`method.bottleneck`, `method.lora`, ...: one field per
    registered method, added from the registry below). Only the block of `kind` is used and recorded; another
    method's block must hold that method's defaults (saved configs repeat them), else it would be ignored.
    """

    kind: MethodName = "bottleneck"

    def __post_init__(self):
        METHODS.get(self.kind)  # an unknown name fails listing the valid ones
        # settings of another method would be ignored; the defaults are what saved configs repeat
        unused = [name for name in _SETTINGS if name != self.kind and getattr(self, name) != _SETTINGS[name]()]
        if unused:
            raise ValueError(f"method.{unused[0]} settings are given, but method.kind is {self.kind}, which "
                             f"does not use them: set method.kind to {unused[0]}, or drop them")

    @property
    def registered(self) -> Method:
        """The registered method record of `kind`."""
        return METHODS.get(self.kind)

    @property
    def options(self) -> Any:
        """The settings record of `kind` (None for a method without settings, e.g. full)."""
        return getattr(self, self.kind) if self.kind in _SETTINGS else None

    def settings(self) -> dict:
        """The settings that matter for `kind` (what manifests record)."""
        from .config import to_dict

        return {} if self.options is None else to_dict(self.options)

    @classmethod
    def from_record(cls, record: Any, source: str = "<config>") -> "MethodSpec":
        """A manifest's method record `{"kind": K, "settings": {...}}` as a MethodSpec (strictly built:
        an unknown kind or setting raises ConfigError naming `source`)."""
        from .config import build

        kind, settings = record.get("kind"), record.get("settings") or {}
        return build(cls, {"kind": kind, kind: settings} if settings else {"kind": kind}, source=source)

    def to_config(self) -> dict:
        """Config / manifest form (`stepstone.config.to_dict` writes it): `{"kind": K, K: {settings}}`, or
        `{"kind": K}` for a method without settings; the other methods' default blocks are left out."""
        return {"kind": self.kind, **({} if self.options is None else {self.kind: self.settings()})}


# One field per registered method with settings: the registrations ran when `.methods` was imported above.
_SETTINGS = {name: m.settings for name, m in METHODS.items() if m.settings is not None}
for _name, _cls in _SETTINGS.items():
    MethodSpec.__annotations__[_name] = _cls
    setattr(MethodSpec, _name, field(default_factory=_cls))
MethodSpec = dataclass(frozen=True)(MethodSpec)


WEIGHTS_RULE = "weights are NAME=W for every member or for none (uniform), each W a finite number > 0; they are " \
               "normalised to sum 1"


def normalised_weights(weights: tuple[float, ...], members: tuple[str, ...]) -> tuple[float, ...]:
    """Member weights checked (one per member, each finite and > 0) and scaled to sum 1. Weights that sum
    to 1 within 1e-9 are kept as given, so normalising a recorded (normalised) set changes nothing and a
    reloaded run rebuilds bit-identical weights."""
    if len(weights) != len(members):
        raise ValueError(f"{len(members)} members but {len(weights)} weights; {WEIGHTS_RULE}")
    for name, weight in zip(members, weights):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight <= 0:
            raise ValueError(f"weight {weight!r} of '{name}' is not a finite number > 0; {WEIGHTS_RULE}")
    total = math.fsum(weights)
    if abs(total - 1.0) <= 1e-9:
        return tuple(float(w) for w in weights)
    return tuple(w / total for w in weights)


@dataclass(frozen=True)
class Composition:
    """Zoo adapters the new target adapter is trained on top of.

    stack: Stack(m1, ..., target) -- members applied in order, then the target adapter.
    fuse:  Stack(Fuse(m1, m2, ...), target) -- an AdapterFusion layer mixes the members, then the target.
    average: the members' outputs (bottleneck) or updates (LoRA) averaged with `weights`, then the target.
    weights: one per member, normalised to sum 1 (None = uniform); only blocks with `weighted` take them.
    """

    block: Block
    members: tuple[str, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self):
        if not self.members:
            raise ValueError("a composition needs at least one member")
        fewest = self.block.min_members
        if len(self.members) < fewest:
            count = {2: "two", 3: "three"}.get(fewest, str(fewest))
            raise ValueError(f"{self.block.value.capitalize()} needs at least {count} members")
        if len(set(self.members)) != len(self.members):
            raise ValueError("composition members must be distinct")
        for member in self.members:
            check_name(member, "composition member")
        if self.weights is not None:
            if not self.block.weighted:
                weighted = ", ".join(b.value.capitalize() for b in Block if b.weighted)
                raise ValueError(f"{self.block.value.capitalize()} takes no weights (only {weighted} does)")
            object.__setattr__(self, "weights", normalised_weights(tuple(self.weights), self.members))

    def to_config(self) -> dict:
        """Config / manifest form: `weights` only where given, so unweighted specs read as they did before."""
        return {"block": self.block, "members": self.members,
                **({} if self.weights is None else {"weights": self.weights})}

    @property
    def mix(self) -> tuple[float, ...]:
        """The members' weights: as given (normalised), else uniform."""
        return self.weights if self.weights is not None else tuple(1.0 / len(self.members) for _ in self.members)

    def __str__(self) -> str:
        """What `stepstone.composition.parse` reads back (weights as repr floats: exact)."""
        items = self.members if self.weights is None else [f"{m}={w!r}" for m, w in zip(self.members, self.weights)]
        return f"{self.block.value.capitalize()}({', '.join(items)})"


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation and data settings. Defaults suit the tiny demo; the paper's recipe is in README.

    lr: peak learning rate; None = the method's usual value (its `default_lr`): 1e-4 for adapters (Pfeiffer et
        al. 2021), 3e-3 for ia3 (Liu et al. 2022), 1e-5 for full fine-tuning (Phang et al. 2020).
    fusion_lr: learning rate of a Fuse layer; None = 5e-5 (Pfeiffer et al. 2021).
    epochs, batch_size, grad_accum: the update is batch_size x grad_accum examples (paper: 4 x 8).
    max_length: tokens per example (paper: 256; QA 384), at most what the backbone's positions cover (512).
    doc_stride: QA sliding-window overlap, 1 to max_length - 1 (checked for QA tasks only); an example whose
        question leaves a shorter window overlaps by that window less one token.
    warmup_ratio: linear warm-up share of all steps, then linear decay (paper: 0.1).
    select_best: evaluate on the English dev split after every epoch and keep the best epoch
        (the paper selects on English dev).
    dev: evaluate on the English dev split at the end (False where no English dev data exists; then
        select_best must be False too and manifests record no dev metrics).
    max_train_examples / max_eval_examples: take the first N examples (None = all).
    threads: torch CPU threads; None = $STEPSTONE_THREADS or torch's default.
    sampling / temperature: how batches of several tasks are mixed (multi-task runs only), T = 2.0.
    precision: fp32 | bf16 | fp16 autocast for training and evaluation (fp16 adds loss scaling).
    grad_checkpointing: recompute the backbone's activations in the backward pass instead of storing them
        (less memory, ~30% more time).
    group_by_length: batches of similar length (less padding): each pass shuffles, cuts the rows into
        groups of 50 batches, sorts each group by length and shuffles the batches (transformers' rule).
    backbone_dropout: keep the backbone's own dropout while training (the usual recipe); False switches
        it off (adapters', fusion layers' and heads' dropout stay): the dropout masks of a frozen
        backbone are a quarter of a bf16 CPU training step.
    checkpoint_every: optimizer steps between checkpoints (RUNS_DIR/NAME.checkpoint, only the latest kept,
        removed when the run is saved) that `--resume` continues from; 0 = none. 500 = transformers' save_steps.
    cache_frozen_layers: compute the output of the backbone's bottom that holds nothing trainable (embeddings
        + the layers below the first adapter: `method.<kind>.leave_out`) once per training row and reuse it
        every later epoch; the forward starts above it and the backward stops there (stepstone.training.frozen).
        Needs backbone_dropout False (else those layers are not a pure function of the input) and an adapter
        method with leave_out >= 1. The same results up to float rounding; dev and zero-shot evaluation run
        the full forward. False by default (issue 17).
    compile: torch.compile(dynamic=True) the training forward (evaluation stays eager). The same results up
        to float rounding; compiling costs minutes on a CPU, so it pays on long runs only. False by default.
    """

    lr: float | None = None
    fusion_lr: float | None = None
    epochs: int = 3
    batch_size: int = 8
    grad_accum: int = 1
    eval_batch_size: int = 32
    max_length: int = 128
    doc_stride: int = 64
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    select_best: bool = True
    dev: bool = True
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    threads: int | None = None
    sampling: Sampling = Sampling.PROPORTIONAL
    temperature: float = 2.0
    precision: Precision = Precision.FP32
    grad_checkpointing: bool = False
    group_by_length: bool = False
    backbone_dropout: bool = True
    checkpoint_every: int = 500
    cache_frozen_layers: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.cache_frozen_layers and self.backbone_dropout:
            raise ValueError("cache_frozen_layers needs backbone_dropout=false: with the backbone's dropout on, "
                             "its layers are not a pure function of the input, so their output cannot be reused")
        if self.select_best and not self.dev:
            raise ValueError("select_best needs dev data: set select_best: false with dev: false")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        positive = ("epochs", "batch_size", "grad_accum", "eval_batch_size", "max_length")
        bad = [name for name in positive if getattr(self, name) < 1]
        if bad:
            raise ValueError(f"must be >= 1: {', '.join(bad)}")
        if self.threads is not None and self.threads < 1:  # 0 would silently be the default
            raise ValueError(f"threads must be >= 1, or null for $STEPSTONE_THREADS / torch's default (got {self.threads})")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (got {self.weight_decay}): a negative one grows the weights")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 (got {self.max_grad_norm}): gradients are clipped to "
                             "this norm, so 0 would stop every update")
        if not -2**63 <= self.seed < 2**64:
            raise ValueError(f"seed must fit torch's 64-bit generator (got {self.seed})")
        if self.checkpoint_every < 0:
            raise ValueError("checkpoint_every must be >= 0 (0 = no checkpoints)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        for name in ("lr", "fusion_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")

    def to_config(self) -> dict:
        """Config / manifest form: the opt-in speed settings (cache_frozen_layers, compile) only where on, so
        every config and manifest written before they existed reads and is written as before."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return {k: v for k, v in values.items() if k not in _OPT_IN or v}

    def resolved(self, method: str) -> "TrainSpec":
        """Fill the method-dependent defaults so the saved spec says what actually ran."""
        lr = self.lr if self.lr is not None else METHODS.get(method).default_lr
        fusion_lr = self.fusion_lr if self.fusion_lr is not None else 5e-5
        return replace(self, lr=lr, fusion_lr=fusion_lr)


_OPT_IN = ("cache_frozen_layers", "compile")  # TrainSpec settings recorded only where on


@dataclass(frozen=True)
class RunSpec:
    """Everything `stepstone train` needs.

    task: a registered task name (`stepstone tasks`), or several for multi-task training: one adapter
    shared by all, one head per task (the paper's best intermediate setting). name: the zoo entry / run
    name (default '<task>-<method>', tasks joined by '-'). compose: zoo adapters to train on top of (None = a standalone
    adapter, saved to the zoo). init_from: the artifact this run starts from (sequential intermediate
    training; its heads are dropped, this run's tasks get new ones): for an adapter method, an adapter of
    the same method and settings on the same backbone (a zoo entry folder, or a zoo entry name) whose adapter
    weights the new adapter starts from; for a full fine-tune, a full fine-tune run whose encoder weights
    start this one (the paper's intermediate -> target sequence). A relative path is a folder under the
    working directory if there is one, else a zoo entry name (pipelines.chains.resolve_init).
    data_dir: local data root for tasks read from files.
    train_split: the split of the English data that trains: train, or validation where only a dev set
    exists (PAWS-X in ../shared); then dev selection sees the training data, so turn select_best off.
    train_splits: per-task exceptions to train_split (multi-task runs over tasks with different data).
    """

    task: tuple[str, ...]
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    method: MethodSpec = field(default_factory=MethodSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    compose: Composition | None = None
    init_from: Path | None = None
    name: str | None = None
    data_dir: Path | None = None
    train_split: str = "train"
    train_splits: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for split in (self.train_split, *self.train_splits.values()):
            if split not in ("train", "validation"):
                raise ValueError(f"train_split must be train or validation (got '{split}')")
        if isinstance(self.task, str):  # RunSpec(task="x") in code: same as a one-task tuple
            object.__setattr__(self, "task", (self.task,))
        if not self.task or len(set(self.task)) != len(self.task):
            raise ValueError("task must name one or more distinct tasks")
        if self.name is not None:
            check_name(self.name, "run name")
        full = self.method.registered.family is Family.FULL
        if full and self.compose is not None:
            raise ValueError("a full fine-tune has no adapters to compose: drop 'compose' or pick an adapter method")
        if self.train.cache_frozen_layers:
            _check_cacheable(self.method, full)
        if full and self.backbone.quantize is not Quantize.NONE:
            raise ValueError(f"a full fine-tune trains the backbone's weights, which cannot be "
                             f"{self.backbone.quantize.value}-quantised: use quantize none, or an adapter method")
        if self.init_from is not None and self.compose is not None:
            raise ValueError("init_from and compose exclude each other: a target adapter on a composition starts "
                             "fresh; train the chain first (init_from), then compose the result")
        if self.compose is not None and self.run_name in self.compose.members:
            raise ValueError(f"the target adapter '{self.run_name}' cannot also be a composition member")

    @property
    def run_name(self) -> str:
        return self.name or f"{'-'.join(self.task)}-{self.method.kind}"


def _check_cacheable(method: MethodSpec, full: bool) -> None:
    """train.cache_frozen_layers needs frozen bottom layers: refuse a method that leaves none (the model's own
    check, after it is built, is stepstone.training.frozen.first_adapted_layer)."""
    if full:
        raise ValueError("train.cache_frozen_layers: full fine-tuning trains every layer: nothing to cache; "
                         "set train.cache_frozen_layers=false")
    leave_out = getattr(method.options, "leave_out", None)
    if leave_out is None:
        raise ValueError(f"train.cache_frozen_layers needs a method with leave_out (bottleneck, houlsby, lora, ia3); "
                         f"method.kind is {method.kind}")
    if leave_out < 1:
        raise ValueError(f"train.cache_frozen_layers needs method.{method.kind}.leave_out >= 1 (the lowest layers "
                         f"without an adapter are what is cached); it is {leave_out}")
