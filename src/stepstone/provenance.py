"""Where a backbone and a run's data came from, recorded so that the artifact reproduces on another machine.

A backbone is named by what identifies its content, not by where it sat: a hub id with the commit it
resolved to, or a local folder with a sha256 over its config, tokenizer and weights files (so a copy of the
folder elsewhere is recognised as the same backbone). Data are recorded per split as the files read
(relative to the data dir, with their sha256) or the hub dataset (id, config, split, commit).

Hashing a local backbone folder reads it once (multilingual-e5-small, 470 MB: 0.4 s with the file in the
page cache, 1.6 s cold, measured here); the result is memoised in-process by (path, size, mtime, inode),
so checking a folder before loading it and recording it after costs one pass.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from .specs import TINY

# The files transformers reads from a model folder: config, tokenizer, weights (anything else, e.g. a
# README or a build marker, does not change the model).
BACKBONE_FILES = ("config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "*.model", "vocab*",
                  "merges.txt", "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_MEMO: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised for this process by (path, size, mtime, inode)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _MEMO[key] = digest.hexdigest()
    return _MEMO[key]


def folder_files(folder: Path) -> dict[str, str]:
    """Name -> sha256 of the config, tokenizer and weights files at the top of a model folder, by name."""
    names = sorted(p.name for p in Path(folder).iterdir()
                   if p.is_file() and any(fnmatch.fnmatchcase(p.name, pattern) for pattern in BACKBONE_FILES))
    return {name: file_sha256(Path(folder) / name) for name in names}


def folder_digest(files: dict[str, str]) -> str:
    """One sha256 over `folder_files`' names and hashes, in name order."""
    return hashlib.sha256("".join(f"{name}\0{files[name]}\n" for name in sorted(files)).encode()).hexdigest()


def hub_commit(repo_id: str, revision: str | None = None, repo_type: str = "model") -> str | None:
    """The commit a hub id (and revision: branch, tag or commit) resolves to in the local Hugging Face cache,
    without the network; None when it is not cached."""
    if revision and _COMMIT.match(revision):
        return revision
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if _COMMIT.match(commit) else None


def backbone_source(name: str, revision: str | None, commit: str | None = None) -> dict | None:
    """What identifies a backbone's content: None for the built-in `tiny` (stepstone's version builds it),
    `{"local", "sha256", "files"}` for a local folder, `{"hub", "revision", "commit"}` for a hub id
    (`commit`: the one transformers loaded, else the cache's)."""
    if name == TINY:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        files = folder_files(path)
        return {"local": str(path.resolve()), "sha256": folder_digest(files), "files": files}
    return {"hub": name, "revision": revision, "commit": commit or hub_commit(name, revision)}


def location(record: dict) -> str:
    """Where to load a recorded backbone from: the absolute folder it was loaded from (the recorded name
    may be relative to another working directory), else its name (tiny or a hub id)."""
    source = record.get("source") or {}
    return source.get("local") or record["name"]


def same_backbone(source: dict | None, name: str, record: dict) -> bool | None:
    """Whether backbone `name` (with `source`, from `backbone_source`) is the one `record` (a manifest's
    backbone record) describes, as far as can be told without loading it: True, False, or None when only
    loading and comparing fingerprints can tell (e.g. a local folder against a hub id)."""
    recorded = record.get("source")
    if name == TINY or record["name"] == TINY:  # tiny is only ever recorded as itself
        return name == record["name"]
    if source is None or recorded is None:
        return None
    if "sha256" in source and "sha256" in recorded:
        return source["sha256"] == recorded["sha256"]
    if "hub" in source and "hub" in recorded:
        if source["commit"] and recorded.get("commit"):
            return source["commit"] == recorded["commit"]
        if source["hub"] == recorded["hub"] and source["revision"] == recorded.get("revision"):
            return True
    return None


def describe(record: dict) -> str:
    """A backbone record in a message: its name, and what identifies its content."""
    source = record.get("source") or {}
    if "sha256" in source:
        return f"'{record['name']}' (folder sha256 {source['sha256'][:16]})"
    if source.get("commit"):
        return f"'{record['name']}' (commit {source['commit'][:12]})"
    if record.get("fingerprint"):
        return f"'{record['name']}' (fingerprint {record['fingerprint']})"
    return f"'{record['name']}'"


# ------------------------------------------------------------------------------------------------ data
_READS: ContextVar[list | None] = ContextVar("stepstone_reads", default=None)


@contextmanager
def recording() -> Iterator[list[dict]]:
    """Collect every data file read and every hub dataset loaded inside the block (in order, once each)."""
    seen: list[dict] = []
    token = _READS.set(seen)
    try:
        yield seen
    finally:
        _READS.reset(token)


def read_file(path: Path, data: bytes) -> None:
    """Readers call this with each file's bytes; it costs nothing outside `recording`."""
    seen = _READS.get()
    if seen is not None:
        entry = {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        if entry not in seen:
            seen.append(entry)


def read_hub(dataset: str, config: str | None, split: str) -> None:
    """The hub source calls this for each dataset split it loads."""
    seen = _READS.get()
    if seen is not None:
        entry = {"hub": dataset, "config": config, "split": split,
                 "commit": hub_commit(dataset, None, repo_type="dataset")}
        if entry not in seen:
            seen.append(entry)


def data_source(seen: list[dict], split: str, lang: str, examples: int, data_dir: Path | None) -> dict | None:
    """One split's record: the split, language and number of examples used, and what they came from
    (files relative to the data dir); None for generated data (no file, no hub: the toy tasks)."""
    if not seen:
        return None
    root = Path(data_dir).resolve() if data_dir is not None else None
    sources = []
    for entry in seen:
        if "path" in entry and root is not None:
            path = Path(entry["path"]).resolve()
            entry = {**entry, "path": str(path.relative_to(root)) if path.is_relative_to(root) else str(path)}
        sources.append(entry)
    return {"split": split, "language": lang, "examples": examples, "sources": sources}
