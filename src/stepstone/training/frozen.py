"""train.cache_frozen_layers: the output of the backbone's frozen bottom, computed once per training row.

With no adapter in the lowest k layers (`method.<kind>.leave_out`, AdapterDrop), a frozen backbone and its
dropout off, the embeddings and layers 0..k-1 are a pure function of the input: their output is computed the
first time a row is in a batch (no gradients, under the run's autocast) and reused every later epoch. The
training forward then runs the adapters model's own forward (heads, adapters' ForwardContext, the attention
mask as it builds it) over layers k.. only, fed the cached states as the embeddings' output, and the backward
stops there. Dev and zero-shot evaluation run the ordinary full forward.

Per row, the cache holds the states of its real tokens ([tokens, hidden] per sequence: a multiple-choice row
has one per choice) and of one padding position: every padding position of a sequence has the same input
(the pad token at XLM-R's padding position id) and attends only to real tokens, so all of them share one
state at every layer. A batch pads each sequence with it: what the full forward computes at padded positions,
which QA heads score too. The cache lives in memory for one training run (rebuilt after a resume); not on
disk: rows x tokens x hidden x 4 bytes (2,000 PAN-X sentences of ~30 tokens at hidden 384: ~90 MB; a 100k-row
set at 128 tokens and hidden 1024: ~50 GB) would cost more to write and read than the layers cost to run.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

from ..errors import StepstoneError
from ..methods import FUSION_OWNER, adapter_kind_of_parameter

INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what the frozen bottom reads of a batch


def first_adapted_layer(model: Any) -> tuple[int, str | None]:
    """(k, why): the index of the first encoder layer holding a trainable parameter or any adapter module (a
    zoo member's too: k stops below every composed adapter), and the parameter that decided it (None when
    no layer holds one). 0 when the embeddings hold a trainable parameter. A Fuse layer in a layer none of
    its members is in does not count: the adapters library adds one to every layer, whatever the members'
    leave_out, but only runs it where a member is."""
    base = model.base_model
    for name, parameter in base.embeddings.named_parameters():
        if parameter.requires_grad:
            return 0, f"embeddings.{name}"
    layers = base.encoder.layer
    for index, layer in enumerate(layers):
        names = dict(layer.named_parameters())
        present = {owner for owner in map(adapter_kind_of_parameter, names) if owner is not None}
        for name, parameter in names.items():
            owner = adapter_kind_of_parameter(name)
            if owner is not None and owner[0] == FUSION_OWNER and not _members_present(owner[1], present):
                continue
            if parameter.requires_grad or owner is not None:
                return index, f"layer {index} holds {name}"
    return len(layers), None


def _members_present(fusion: str, present: set[tuple[str, str]]) -> bool:
    """Whether any member of the Fuse layer named `fusion` ('a,b') has a module in the layer."""
    members = set(fusion.split(","))
    return any(kind not in (FUSION_OWNER, "heads") and owner in members for kind, owner in present)


def one_process_cache(world: int) -> StepstoneError:
    """The refusal under `accelerate launch`: the cache and its module swaps are not wired for DDP (each process
    would cache its own shard's rows, and DDP would see the encoder's layer list change every step)."""
    return StepstoneError(f"train.cache_frozen_layers runs in one process only ({world} were launched): launch "
                          f"without accelerate, or set train.cache_frozen_layers=false")


class FrozenLayerCache:
    """The cached output of the embeddings + layers 0..k-1 for the rows of one training run.

    `feeding(rows, batch)` is the context a training forward runs in: it computes the states of rows not seen
    yet, then swaps the encoder's layer list for layers k.. and makes the embeddings return the batch's
    cached states. Rows are keyed by identity (the run's row dicts live for the whole run)."""

    def __init__(self, model: Any, k: int):
        base = model.base_model
        self.model, self.k = model, k
        self.encoder, self.embeddings = base.encoder, base.embeddings
        self.layers = base.encoder.layer
        # the same two lists every step: a compiled forward sees one module structure
        self.lower = torch.nn.ModuleList(list(self.layers)[:k])
        self.upper = torch.nn.ModuleList(list(self.layers)[k:])
        self.states: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # id(row) -> (real, pad) per sequence
        self.feed: torch.Tensor | None = None  # the states the embeddings return during a forward

    @classmethod
    def of(cls, model: Any) -> "FrozenLayerCache":
        """The cache of `model`'s frozen bottom; refuses a model whose layer 0 already holds an adapter."""
        k, why = first_adapted_layer(model)
        if k == 0:
            raise StepstoneError(f"train.cache_frozen_layers: nothing to cache: the backbone's {why} (trainable, or "
                                 f"an adapter); give the adapter (and every composed zoo adapter) leave_out >= 1, "
                                 f"or set train.cache_frozen_layers=false")
        return cls(model, k)

    @contextmanager
    def feeding(self, rows: Sequence[dict], batch: dict) -> Iterator[None]:
        """Run the forward inside from layer k, on the cached states of `rows` (collated as `batch`)."""
        self._fill([row for row in rows if id(row) not in self.states], batch, rows)
        self.feed = self._padded(rows, batch["attention_mask"])
        hook = self.embeddings.register_forward_hook(self._cached_output)
        self.encoder.layer = self.upper
        try:
            yield
        finally:
            self.encoder.layer = self.layers
            hook.remove()
            self.feed = None

    def _cached_output(self, module: Any, args: Any, output: torch.Tensor) -> torch.Tensor:
        if self.feed is None or self.feed.shape[:2] != output.shape[:2]:
            raise RuntimeError(f"frozen layer cache: states {None if self.feed is None else tuple(self.feed.shape)} "
                               f"for an embeddings output of shape {tuple(output.shape)}")
        return self.feed

    def _fill(self, missing: list[dict], batch: dict, rows: Sequence[dict]) -> None:
        """The states of the `missing` rows: the frozen bottom run on the batch's inputs (and one more padding
        column, so every sequence has a padding position), under no_grad."""
        if not missing:
            return
        mask = batch["attention_mask"]
        width = mask.shape[-1]
        flat = {k: batch[k].reshape(-1, width) for k in INPUTS if k in batch}
        pad = {"input_ids": self.model.config.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        flat = {k: torch.cat([v, torch.full((v.shape[0], 1), pad[k], dtype=v.dtype)], dim=1).to(self._device())
                for k, v in flat.items()}
        self.encoder.layer = self.lower
        try:
            with torch.no_grad():
                hidden = self.model.base_model(**flat, return_dict=True).last_hidden_state
        finally:
            self.encoder.layer = self.layers
        lengths = flat["attention_mask"].sum(dim=1).tolist()
        per_row = len(lengths) // len(rows)
        wanted = {id(row) for row in missing}
        for r, row in enumerate(rows):
            if id(row) not in wanted:
                continue
            sequences = range(r * per_row, (r + 1) * per_row)
            self.states[id(row)] = [(hidden[s, :lengths[s]].clone(), hidden[s, lengths[s]].clone()) for s in sequences]

    def _padded(self, rows: Sequence[dict], mask: torch.Tensor) -> torch.Tensor:
        """The batch's states, each sequence padded with its padding state to the batch's width."""
        width = mask.shape[-1]
        return torch.stack([torch.cat([real, pad.expand(width - real.shape[0], -1)])
                            for row in rows for real, pad in self.states[id(row)]])

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device
