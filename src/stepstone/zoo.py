"""The adapter zoo: a folder of self-describing adapter entries (one sub-folder each)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .artifacts import MANIFEST, describe_errno, remove_leftovers, remove_tree
from .errors import StepstoneError, choices
from .manifest import Manifest, read_manifest
from .specs import NAME_PATTERN, check_name

ENV = "STEPSTONE_ZOO"


def default_root() -> Path:
    """$STEPSTONE_ZOO, else the checkout's adapters_zoo/ (else ./adapters_zoo for a non-editable install)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "adapters_zoo"
    return checkout if checkout.is_dir() else Path.cwd() / "adapters_zoo"


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    manifest: Manifest


class Zoo:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def path(self, name: str) -> Path:
        try:
            return self.root / check_name(name, "zoo entry name")
        except ValueError as err:
            raise StepstoneError(str(err)) from None

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        # Only valid names: hidden '.NAME.tmp-*' / '.NAME.deleting-*' folders a killed save or
        # remove leaves behind are never entries. Nor are symbolic links (see `get`).
        return sorted(p.name for p in self.root.iterdir()
                      if NAME_PATTERN.match(p.name) and not p.is_symlink() and (p / MANIFEST).is_file())

    def entries(self) -> list[Entry]:
        return [Entry(name, self.root / name, read_manifest(self.root / name, verify=False)) for name in self.names()]

    def get(self, name: str, verify: bool = True) -> Entry:
        path = self.path(name)
        if path.is_symlink():
            # An entry is a real folder inside the zoo: through a link, loading would read (and `evaluate`
            # write) wherever it points, and removing it would not remove what it points to.
            raise StepstoneError(f"'{path}' is a symbolic link (to '{os.readlink(path)}'); a zoo entry must be "
                                 f"a real folder inside the zoo: copy it in instead")
        if not (path / MANIFEST).is_file():
            known = self.names()
            raise StepstoneError(f"no zoo entry '{name}' in {self.root} (entries: {choices(known) or 'none'})")
        manifest = read_manifest(path, verify=verify)
        if manifest.name != name:  # a renamed folder: its adapter would load under the other name
            raise StepstoneError(f"zoo folder '{name}' holds the entry '{manifest.name}': a renamed folder? "
                                 f"Rename it back to '{manifest.name}'")
        return Entry(name, path, manifest)

    def remove(self, name: str) -> Entry:
        entry = self.get(name, verify=False)
        # Renamed first so a crash mid-delete never leaves a half entry that still looks valid.
        try:
            remove_tree(entry.path)
        except OSError as err:  # e.g. a read-only zoo: nothing was changed
            raise StepstoneError(f"could not remove '{entry.path}': {describe_errno(err.errno, err.strerror)}; "
                                 f"nothing was removed") from None
        remove_leftovers(self.root)
        return entry


def show_artifact(target: str, zoo: Zoo | None = None) -> tuple[Path, Manifest]:
    """What `zoo show` prints: a zoo entry by name, or any artifact folder (a run, an entry) by path; its
    manifest, with the weights checked against their hashes. A folder holding no manifest is named as such,
    unless a zoo entry has that name."""
    zoo = zoo or Zoo()
    path = Path(target)
    if (path / MANIFEST).is_file():
        return path, read_manifest(path)
    if path.is_dir() and not (NAME_PATTERN.match(target) and (zoo.root / target / MANIFEST).is_file()):
        raise StepstoneError(f"'{target}' is neither a zoo entry in {zoo.root} nor a run folder: it holds no {MANIFEST}")
    entry = zoo.get(target)
    return entry.path, entry.manifest
