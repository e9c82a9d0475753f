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
import shutil
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator

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
    and this one reports it; the winner's folder is left intact."""
    if final.exists():
        raise StepstoneError(f"'{final}' already exists; pick another name or remove it first")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            raise StepstoneError(f"'{final}' was created by another process while this one was saving") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary sibling + os.replace (readers see the old or the new file).
    The file gets the usual 0644 mode (mkstemp's own is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
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


def weight_files(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every safetensors file under `folder`."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*.safetensors"))}


def write_manifest(folder: Path, manifest: dict) -> None:
    """Add format/version/file-hash fields and write manifest.json (sorted keys)."""
    files = weight_files(folder)
    full = {**manifest, "format_version": FORMAT_VERSION, "versions": library_versions(), "files": files,
            "weights_bytes": sum((folder / f).stat().st_size for f in files)}
    (folder / MANIFEST).write_text(to_json(full), encoding="utf-8")


def read_manifest(folder: Path, verify: bool = True) -> dict:
    """Read and check a manifest; with `verify`, also check every weights file against its hash."""
    path = folder / MANIFEST
    if not path.is_file():
        raise StepstoneError(f"'{folder}' is not a stepstone artifact: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StepstoneError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format_version"), int):
        raise StepstoneError(f"{path}: no integer 'format_version': not a stepstone manifest")
    if manifest["format_version"] > FORMAT_VERSION:
        raise StepstoneError(
            f"{path}: format version {manifest['format_version']} is newer than this stepstone "
            f"understands ({FORMAT_VERSION}); upgrade stepstone"
        )
    missing = [k for k in ("kind", "name", "backbone", "task", "tasks", "method", "mode", "spec", "files")
               if k not in manifest]
    if missing:
        raise StepstoneError(f"{path}: missing field(s): {', '.join(missing)}")
    if verify:
        for relative, expected in manifest["files"].items():
            weights = folder / relative
            if not weights.is_file():
                raise StepstoneError(f"'{folder}': weights file {relative} is missing")
            if sha256(weights) != expected:
                raise StepstoneError(f"'{folder}': weights file {relative} is corrupted (sha256 mismatch)")
    return manifest
