"""Tokenised rows cached on disk between runs and across a grid's cells (the datasets library's Arrow format).

Encoding a large training set (MNLI: 393k pairs) takes minutes on a CPU and is the same for every run that uses
the same data, tokenizer and lengths: every target cell of a grid, every seed, every resumed run. `encode`
keys the result by a sha256 of everything the rows depend on (the examples themselves, the task's format and
labels, the tokenizer's full definition, max_length, doc_stride, train/eval, and ENCODING_VERSION, raised
whenever a format's encoding changes) and keeps it under `$STEPSTONE_CACHE/tokenized/` (default
`~/.cache/stepstone`), written atomically. A hit returns rows equal to a fresh encoding (tested per format).
Delete the folder to clear it; `STEPSTONE_CACHE=off` turns caching off.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .formats import FormatHandler
from .progress import Bar, ProgressFactory, silent
from .tasks.base import TaskSpec

ENCODING_VERSION = 2  # 2: QA cuts long questions and clips the overlap per example
MIN_EXAMPLES = 256  # below this, encoding is faster than hashing + reading the cache
CHUNK = 2000  # examples encoded per call, between progress updates (MNLI: ~200 chunks)


def cache_root() -> Path | None:
    """`$STEPSTONE_CACHE/tokenized` (default ~/.cache/stepstone/tokenized); None when STEPSTONE_CACHE=off."""
    base = os.environ.get("STEPSTONE_CACHE", "")
    if base.lower() == "off":
        return None
    return (Path(base) if base else Path.home() / ".cache" / "stepstone").expanduser() / "tokenized"


def encode(handler: FormatHandler, examples: list[dict], tokenizer: Any, task: TaskSpec, max_length: int,
           doc_stride: int, train: bool, progress: ProgressFactory = silent,
           description: str | None = None) -> list[dict]:
    """`handler.encode(...)`, from the cache when the same encoding was done before; progress in
    examples (default description: `tokenize TASK`)."""
    with progress(description or f"tokenize {task.name}", len(examples)) as bar:
        return _encode(handler, examples, tokenizer, task, max_length, doc_stride, train, bar)


def _chunked(handler: FormatHandler, examples: list[dict], tokenizer: Any, task: TaskSpec, max_length: int,
             doc_stride: int, train: bool, bar: Bar) -> list[dict]:
    """`handler.encode` over CHUNK examples at a time: the same rows as one call (each example is
    tokenised on its own; a row's `example_index`, QA's link to its example, is shifted by the chunk's
    start), with progress between chunks."""
    rows: list[dict] = []
    for start in range(0, len(examples), CHUNK):
        chunk = examples[start:start + CHUNK]
        part = handler.encode(chunk, tokenizer, task, max_length, doc_stride, train)
        if start:
            for row in part:
                if "example_index" in row:
                    row["example_index"] += start
        rows += part
        bar.advance(len(chunk))
    return rows


def _encode(handler: FormatHandler, examples: list[dict], tokenizer: Any, task: TaskSpec, max_length: int,
            doc_stride: int, train: bool, bar: Bar) -> list[dict]:
    root = cache_root()
    if root is None or len(examples) < MIN_EXAMPLES:
        return _chunked(handler, examples, tokenizer, task, max_length, doc_stride, train, bar)
    key = hashlib.sha256(json.dumps({
        "version": ENCODING_VERSION, "handler": type(handler).__qualname__, "format": task.format.value,
        "labels": list(task.labels), "num_choices": task.num_choices, "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length, "doc_stride": doc_stride, "train": train, "examples": examples,
    }, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()
    folder = root / f"{task.name}-{'train' if train else 'eval'}-{key[:32]}"
    from datasets import Dataset

    unreadable = False
    if (folder / "dataset_info.json").is_file():
        try:
            rows = Dataset.load_from_disk(str(folder)).to_list()
            bar.advance(len(examples), "cached")
            return rows
        except (OSError, ValueError):  # unreadable (e.g. a disk filled up mid-write elsewhere): encode again
            unreadable = True
    rows = _chunked(handler, examples, tokenizer, task, max_length, doc_stride, train, bar)
    if rows:
        _store(folder, rows, replace=unreadable)
    return rows


def _store(folder: Path, rows: list[dict], replace: bool) -> None:
    """Save `rows` as `folder`, unless another process (a grid's other worker) saved it meanwhile; `replace`: the
    folder there is unreadable, remove it first. (A folder that appeared while this process encoded is another's
    good save, maybe being read: never removed.)"""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    from .artifacts import atomic_dir
    from .errors import StepstoneError

    shown = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        if replace:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        elif folder.exists():
            return
        with atomic_dir(folder) as tmp:
            Dataset.from_list(rows).save_to_disk(str(tmp))
    except (StepstoneError, OSError):  # another process stored it first, or the disk is full: not needed
        pass
    finally:
        if shown:
            enable_progress_bar()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's whole definition (vocab, normalizer, pre-tokenizer, post-processor), memoised
    on the tokenizer object."""
    cached = getattr(tokenizer, "_stepstone_fingerprint", None)
    if cached is None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        definition = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
        special = json.dumps({"class": type(tokenizer).__name__, "special": tokenizer.special_tokens_map,
                              "padding_side": tokenizer.padding_side, "inputs": list(tokenizer.model_input_names)},
                             sort_keys=True, default=str)
        cached = hashlib.sha256((definition + special).encode("utf-8")).hexdigest()
        tokenizer._stepstone_fingerprint = cached
    return cached
