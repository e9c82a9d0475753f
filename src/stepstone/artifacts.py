"""Self-describing artifacts: safetensors weights + a JSON manifest, written atomically.

Every artifact is a folder. It is assembled in a temporary sibling folder and renamed into place in
one step, so readers never see a half-written artifact and a crash leaves only a `.NAME.tmp-*`
folder behind. The manifest records what ran next to what it produced and the sha256 of every
weights file, which loading verifies.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import StepstoneError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.yaml"
_LIBRARIES = ("torch", "transformers", "adapters", "peft", "datasets", "safetensors", "accelerate")


def library_versions() -> dict[str, str]:
    versions = {"stepstone": __version__}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on success rename it to `final` in one step.

    Refuses an existing `final`. If another process wins the race for the same name, the rename fails
    and this one reports it; the winner's folder is left intact. The temporary folder is named
    `.NAME.tmp-HOST-PID-*`: what a killed save left behind (its process gone) is removed by the next save
    into the same folder (`remove_leftovers`), and never looks like an artifact to readers."""
    if final.exists():
        raise StepstoneError(f"'{final}' already exists; pick another name or remove it first")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{_HOST}-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            raise StepstoneError(f"'{final}' was created by another process while this one was saving") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_HOST = socket.gethostname().replace("-", "_") or "host"


# What a killed process can leave in a folder, each named after its process: `.NAME.tmp-HOST-PID-*` (an
# atomic_dir folder or a write_bytes_atomic file), `.NAME.deleting-HOST-PID` (a folder renamed away to be
# deleted: checkpoint rotation, the checkpoint folder once the run is saved, `zoo rm`; older versions wrote
# `.NAME.deleting-PID`), and `.NAME.lock` (see locks.py; no PID in the name: free once its holder is gone).
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:tmp-(?P<host>[^-]+)-(?P<pid>\d+)-.*"
                       r"|deleting-(?:(?P<dhost>[^-]+)-)?(?P<dpid>\d+))", re.DOTALL)


def remove_leftovers(folder: Path, name: str | None = None) -> list[str]:
    """Remove what killed processes of this host left in `folder` (only the leftovers of `name` when given):
    never anything of a live process, nor of another host (whose processes cannot be checked). Returns the
    names removed. Every writer calls it on the folder it writes to, so a leftover lasts until the next run
    that touches the folder."""
    from .locks import SUFFIX as LOCK, holder, remove_if_stale

    try:
        entries = sorted(os.listdir(folder))
    except OSError:  # no folder (yet), or unreadable: nothing of ours to clean
        return []
    removed = []
    for entry in entries:
        path = Path(folder) / entry
        if name is not None and not entry.startswith(f".{name}."):
            continue
        if entry.startswith(".") and entry.endswith(LOCK) and len(entry) > len(LOCK) + 1:
            if holder(path) is not None and remove_if_stale(path):  # ours (PID@HOST inside), and free
                removed.append(entry)
            continue
        found = _LEFTOVER.fullmatch(entry)
        if found is None or (name is not None and found["name"] != name):
            continue
        host = found["host"] or found["dhost"] or _HOST
        pid = int(found["pid"] or found["dpid"])
        if host != _HOST or _alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def remove_tree(path: Path) -> None:
    """Delete a folder so that a kill at any moment leaves no half folder under its name: renamed first to
    `.NAME.deleting-HOST-PID` (which `remove_leftovers` clears if the kill comes during the deletion)."""
    trash = path.with_name(f".{path.name}.deleting-{_HOST}-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary sibling + os.replace (readers see the old or the new file).
    The file gets the usual 0644 mode (mkstemp's own is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, path.name)  # only this file's: the folder may be anyone's
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_HOST}-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weight_files(folder: Path, hashes: bool = True) -> dict[str, str]:
    """Relative path -> sha256 (or "" without `hashes`) of every safetensors file under `folder`."""
    return {str(p.relative_to(folder)): sha256(p) if hashes else "" for p in sorted(folder.rglob("*.safetensors"))}


def write_manifest(folder: Path, manifest: dict) -> None:
    """Add format/version/file-hash fields and write manifest.json (sorted keys)."""
    files = weight_files(folder)
    full = {**manifest, "format_version": FORMAT_VERSION, "versions": library_versions(), "files": files,
            "weights_bytes": sum((folder / f).stat().st_size for f in files)}
    (folder / MANIFEST).write_text(to_json(full), encoding="utf-8")


# What loading relies on, checked before anything else is read: field -> a JSON type, a tuple of allowed
# values, or a dict of required sub-fields (other fields are free: older and newer writers add some).
SCHEMA: dict = {
    "format_version": int, "kind": ("adapter", "run"), "name": str, "mode": ("adapter", "fusion", "full"),
    "backbone": {"name": str, "fingerprint": str}, "method": {"kind": ("bottleneck", "lora", "full"), "settings": dict},
    "task": {"name": str}, "tasks": list, "spec": dict, "files": dict,
}
# Formats that unpickle on load (torch.save / pickle / joblib): stepstone never writes them and never reads
# a folder that holds one, so a shared adapter cannot smuggle code in through a library's fallback loader.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def schema_problems(manifest: Any, schema: dict = SCHEMA, where: str = "") -> list[str]:
    """What in `manifest` does not match `schema`: one phrase per problem, e.g. "'backbone.name' is missing"."""
    if not isinstance(manifest, dict):
        return [f"'{where or 'manifest'}' must be an object, got {type(manifest).__name__}"]
    problems = []
    for key, rule in schema.items():
        name = f"{where}.{key}" if where else key
        if key not in manifest:
            problems.append(f"'{name}' is missing")
        elif isinstance(rule, dict):
            problems += schema_problems(manifest[key], rule, name)
        elif isinstance(rule, tuple):
            if manifest[key] not in rule:
                problems.append(f"'{name}' must be one of {', '.join(rule)}, got {manifest[key]!r}")
        elif not isinstance(manifest[key], rule) or (rule is int and isinstance(manifest[key], bool)):
            problems.append(f"'{name}' must be {_JSON_TYPES[rule]}, got {json.dumps(manifest[key])[:40]}")
    return problems


_JSON_TYPES = {int: "an integer", str: "a string", dict: "an object", list: "a list"}


def read_manifest(folder: Path, verify: bool = True) -> dict:
    """Read and check a manifest (JSON, format version, schema, weights file names); with `verify`, also
    check every weights file against its hash and refuse a folder that holds a pickle or unlisted weights."""
    path = folder / MANIFEST
    if not path.is_file():
        raise StepstoneError(f"'{folder}' is not a stepstone artifact: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StepstoneError(f"{path}: not valid JSON ({err})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise StepstoneError(f"{path}: no integer 'format_version': not a stepstone manifest")
    if manifest["format_version"] > FORMAT_VERSION:
        raise StepstoneError(
            f"{path}: format version {manifest['format_version']} is newer than this stepstone "
            f"understands ({FORMAT_VERSION}); upgrade stepstone"
        )
    problems = schema_problems(manifest)
    if problems:
        raise StepstoneError(f"{path}: not a valid manifest: {'; '.join(problems)}")
    for relative, digest in manifest["files"].items():
        parts = Path(relative).parts
        if Path(relative).is_absolute() or ".." in parts or not relative.endswith(".safetensors") \
                or not isinstance(digest, str) or not _SHA256.match(digest):
            raise StepstoneError(f"{path}: bad weights entry {relative!r} (expected a relative path to a "
                                 f".safetensors file inside the artifact and its sha256)")
    if verify:
        pickles = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise StepstoneError(f"'{folder}' holds pickle-format file(s) {', '.join(pickles[:3])}: "
                                 f"refusing to load it "
                                 f"(stepstone reads safetensors only; remove them if the rest is trusted)")
        unlisted = sorted(set(weight_files(folder, hashes=False)) - set(manifest["files"]))
        if unlisted:
            raise StepstoneError(f"'{folder}': weights file {unlisted[0]} is not in the manifest (a file that "
                                 f"cannot be verified is not loaded)")
        for relative, expected in manifest["files"].items():
            weights = folder / relative
            if not weights.is_file():
                raise StepstoneError(f"'{folder}': weights file {relative} is missing")
            if sha256(weights) != expected:
                raise StepstoneError(f"'{folder}': weights file {relative} is corrupted (sha256 mismatch)")
    return manifest
