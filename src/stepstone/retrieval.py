"""Zero-shot sentence retrieval as in XTREME (Hu et al. 2020) and Phang et al. (2020): Tatoeba and BUCC 2018.

No training and no head: a sentence embedding is the mean over all non-padding tokens (special tokens
included) of the hidden states that encoder layer `k` outputs, L2-normalised, so the dot product is the
cosine. XTREME reads layer 14 of XLM-R large's 24; `default_layer` scales that to other depths.
Active adapters apply: `embed` runs the model's encoder (`model.base_model`), where they live.

- Tatoeba (Artetxe & Schwenk 2019): for each non-English sentence the nearest English one; top-1 accuracy
  in percent (XTREME's direction, xx -> en).
- BUCC 2018 (Zweigenbaum et al. 2018) bitext mining with ratio-margin scoring (Artetxe & Schwenk 2019,
  "Margin-based parallel corpus mining", ACL): each source sentence proposes the target with the highest
  margin (forward mining); candidates above a threshold count as mined pairs. XTREME tunes the threshold
  on the gold pairs of the split it has (`bucc_optimize` in its third_party/utils_retrieve.py); so do we,
  and report it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .data.readers import BuccData
from .errors import StepstoneError
from .progress import ProgressFactory, silent

XTREME_LAYER, XTREME_DEPTH = 14, 24  # XTREME's layer for XLM-R large
MARGIN_K = 4  # neighbours in the margin's denominator (XTREME, after Artetxe & Schwenk 2019)
CHUNK_ROWS = 1024  # rows of the [n_src, n_tgt] similarity held at once (1024 x 13.6k float32 = 56 MB)


class Pooling(str, Enum):
    MEAN = "mean"  # mean over non-padding tokens, special tokens included (XTREME)
    CLS = "cls"  # the first token's vector (<s>)


def default_layer(num_layers: int) -> int:
    """XTREME's layer 14 of 24 scaled to `num_layers`, rounded half up: 24 -> 14, 12 -> 7, 2 -> 1."""
    return (XTREME_LAYER * num_layers + XTREME_DEPTH // 2) // XTREME_DEPTH


@dataclass(frozen=True)
class RetrievalSettings:
    """layer: hidden_states index (0 = embeddings, L = last layer); None = `default_layer`.
    pooling: mean (XTREME's) or cls. batch_size, max_length: tokens per sentence after truncation."""

    layer: int | None = None
    pooling: Pooling = Pooling.MEAN
    batch_size: int = 64
    max_length: int = 128

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "pooling", Pooling(self.pooling))
        except ValueError:
            raise StepstoneError(f"unknown pooling '{self.pooling}' (valid: "
                                 f"{', '.join(p.value for p in Pooling)})") from None
        if self.batch_size < 1 or self.max_length < 2:
            raise StepstoneError(f"batch_size must be >= 1 and max_length >= 2 (got {self.batch_size}, "
                                 f"{self.max_length})")

    def resolve_layer(self, model: Any) -> int:
        n = model.config.num_hidden_layers
        layer = default_layer(n) if self.layer is None else self.layer
        if not 0 <= layer <= n:
            raise StepstoneError(f"retrieval layer {layer} is out of range: this backbone has layers 0..{n} "
                                 f"(0 = embeddings, {n} = last)")
        return layer


class _Reached(Exception):
    """Raised by the hook on the wanted layer: the layers above it need not run."""


def embed(model: Any, tokenizer: Any, sentences: Sequence[str], *, layer: int, batch_size: int = 64,
          max_length: int = 128, progress: ProgressFactory = silent, pooling: Pooling = Pooling.MEAN,
          description: str = "embed") -> np.ndarray:
    """float32 [n, hidden], unit rows: `hidden_states[layer]` of `model.base_model`, mean-pooled (or the
    first token's vector with `pooling=cls`).

    Batches hold sentences of similar length (sorted, order restored). The forward pass stops once
    `layer` has run (a hook on it); the result equals `hidden_states[layer]` of a full pass."""
    base = model.base_model
    n_layers = model.config.num_hidden_layers
    if not 0 <= layer <= n_layers:
        raise StepstoneError(f"retrieval layer {layer} is out of range: this backbone has layers 0..{n_layers}")
    if not len(sentences):
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    ids = tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    module = base.embeddings if layer == 0 else base.encoder.layer[layer - 1]
    caught: list[torch.Tensor] = []

    def hook(_module: Any, _args: Any, output: Any) -> None:
        caught.append(output[0] if isinstance(output, tuple) else output)
        if layer < n_layers:
            raise _Reached

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    handle = module.register_forward_hook(hook)
    try:
        with torch.inference_mode(), progress(description, len(ids)) as bar:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                width = len(ids[rows[0]])
                input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    input_ids[r, :len(ids[i])] = torch.tensor(ids[i])
                    mask[r, :len(ids[i])] = 1
                caught.clear()
                try:
                    base(input_ids=input_ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
                except _Reached:
                    pass
                hidden = caught[-1].float().cpu()
                if pooling is Pooling.CLS:
                    pooled = hidden[:, 0]
                else:
                    m = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * m).sum(1) / m.sum(1)
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
                bar.advance(len(rows))
    finally:
        handle.remove()
        model.train(was_training)
    return out


def _blocks(source: np.ndarray, target: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, cosine block [<=CHUNK_ROWS, n_tgt]) over the rows of source @ target.T."""
    for start in range(0, len(source), CHUNK_ROWS):
        yield start, source[start:start + CHUNK_ROWS] @ target.T


def tatoeba_accuracy(source: np.ndarray, english: np.ndarray) -> dict[str, float]:
    """{"accuracy": % of rows i whose nearest English row (cosine) is row i}. Rows must be unit norm;
    ties go to the lower index (argmax)."""
    if len(source) != len(english) or not len(source):
        raise StepstoneError(f"Tatoeba needs aligned, non-empty sides (got {len(source)} and {len(english)})")
    hits = sum(int((block.argmax(1) == np.arange(start, start + len(block))).sum())
               for start, block in _blocks(source, english))
    return {"accuracy": 100.0 * hits / len(source)}


def knn_means(source: np.ndarray, target: np.ndarray, k: int = MARGIN_K) -> tuple[np.ndarray, np.ndarray]:
    """Mean cosine of each source row to its k nearest target rows, and of each target row to its k nearest
    source rows (k capped at the other side's size), computed block by block."""
    ks, kt = min(k, len(target)), min(k, len(source))
    src_mean = np.empty(len(source), dtype=np.float32)
    tgt_top = np.full((kt, len(target)), -np.inf, dtype=np.float32)  # running top-kt per target column
    for start, block in _blocks(source, target):
        src_mean[start:start + len(block)] = np.partition(block, -ks, axis=1)[:, -ks:].mean(1)
        both = np.concatenate([tgt_top, np.partition(block, -min(kt, len(block)), axis=0)[-kt:]])
        tgt_top = np.partition(both, -kt, axis=0)[-kt:]
    return src_mean, tgt_top.mean(0)


def bucc_mine(source_ids: Sequence[str], source_emb: np.ndarray, target_ids: Sequence[str],
              target_emb: np.ndarray, k: int = MARGIN_K) -> list[tuple[str, str, float]]:
    """Forward ratio-margin mining: for each source x the target y maximising
    margin(x, y) = cos(x, y) / (sum_{z in NN_k(x)} cos(x, z) / 2k + sum_{z in NN_k(y)} cos(y, z) / 2k).
    Returns (source id, target id, margin) per source, by margin descending (ties: source order)."""
    if len(source_ids) != len(source_emb) or len(target_ids) != len(target_emb):
        raise StepstoneError("bucc_mine: ids and embeddings differ in length")
    if not len(source_ids) or not len(target_ids):
        return []
    src_mean, tgt_mean = knn_means(source_emb, target_emb, k)
    best = np.empty(len(source_ids), dtype=np.int64)
    score = np.empty(len(source_ids), dtype=np.float32)
    for start, block in _blocks(source_emb, target_emb):
        rows = slice(start, start + len(block))
        margin = block / ((src_mean[rows, None] + tgt_mean[None, :]) / 2)
        best[rows] = margin.argmax(1)
        score[rows] = margin[np.arange(len(block)), best[rows]]
    ranked = sorted(range(len(source_ids)), key=lambda i: (-float(score[i]), i))
    return [(source_ids[i], target_ids[best[i]], float(score[i])) for i in ranked]


def bucc_f1(candidates: Sequence[tuple[str, str, float]], gold: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Precision, recall and F1 (%) of the candidates whose margin is >= the threshold that maximises F1.

    Thresholds are tried between consecutive distinct margins (a run of equal margins is kept or dropped
    whole); like XTREME's `bucc_optimize`, the threshold is the midpoint between the last kept margin and
    the next one (the last margin when everything is kept). With no correct candidate: all 0, threshold =
    the highest margin."""
    gold_set = {(s, t) for s, t in gold}
    if not gold_set:
        raise StepstoneError("BUCC needs at least one gold pair")
    ranked = sorted(candidates, key=lambda c: -c[2])
    best = {"f1": 0.0, "precision": 0.0, "recall": 0.0, "threshold": ranked[0][2] if ranked else 0.0}
    correct = 0
    for i, (s, t, m) in enumerate(ranked):
        correct += (s, t) in gold_set
        following = ranked[i + 1][2] if i + 1 < len(ranked) else None
        if following == m or not correct:
            continue
        p, r = correct / (i + 1), correct / len(gold_set)
        f1 = 2 * p * r / (p + r)
        if f1 > best["f1"] / 100:
            best = {"f1": 100 * f1, "precision": 100 * p, "recall": 100 * r,
                    "threshold": m if following is None else (m + following) / 2}
    return best


def evaluate_tatoeba(model: Any, tokenizer: Any, pairs: list[tuple[str, str]], settings: RetrievalSettings,
                     progress: ProgressFactory = silent, label: str = "tatoeba") -> dict[str, float]:
    """{"accuracy": xx -> en top-1 %, "layer"} on aligned (xx, eng) pairs (`readers.read_tatoeba`).
    `label` names the progress phases (`embed LABEL source`, `embed LABEL english`)."""
    layer = settings.resolve_layer(model)
    kw = dict(layer=layer, batch_size=settings.batch_size, max_length=settings.max_length, progress=progress,
              pooling=settings.pooling)
    source = embed(model, tokenizer, [x for x, _ in pairs], **kw, description=f"embed {label} source")
    english = embed(model, tokenizer, [e for _, e in pairs], **kw, description=f"embed {label} english")
    return {**tatoeba_accuracy(source, english), "layer": layer}


def evaluate_bucc(model: Any, tokenizer: Any, data: BuccData, settings: RetrievalSettings,
                  progress: ProgressFactory = silent, label: str = "bucc") -> dict[str, float]:
    """{"f1", "precision", "recall" (%), "threshold" (margin), "layer"}: forward margin mining over all of
    `data.source` x `data.target`, scored against `data.gold` at the F1-optimal threshold. `label` names
    the progress phases (`embed LABEL source` / `target`, then the status `mine LABEL`)."""
    layer = settings.resolve_layer(model)
    kw = dict(layer=layer, batch_size=settings.batch_size, max_length=settings.max_length, progress=progress,
              pooling=settings.pooling)
    src_ids, tgt_ids = list(data.source), list(data.target)
    source = embed(model, tokenizer, [data.source[i] for i in src_ids], **kw, description=f"embed {label} source")
    target = embed(model, tokenizer, [data.target[i] for i in tgt_ids], **kw, description=f"embed {label} target")
    with progress(f"mine {label}", None):
        return {**bucc_f1(bucc_mine(src_ids, source, tgt_ids, target), data.gold), "layer": layer}
