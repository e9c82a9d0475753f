"""Bilingual lexicons in the common two-column format (MUSE, Conneau et al. 2018: `source target` per line,
separated by whitespace or a tab; a source word on several lines has several translations)."""
from __future__ import annotations

from pathlib import Path

from ..errors import StepstoneError


def read_lexicon(path: Path) -> dict[str, tuple[str, ...]]:
    """Source word -> its translations in file order (repeats dropped). Blank lines are skipped; every other
    line has exactly two columns. A missing, unreadable, non-UTF-8 or empty file is an error naming it."""
    path = Path(path)
    if not path.exists():
        raise StepstoneError(f"{path}: lexicon file not found")
    if not path.is_file():
        raise StepstoneError(f"{path}: lexicon is not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise StepstoneError(f"{path}: cannot read the lexicon ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise StepstoneError(f"{path}:{line}: not valid UTF-8") from None
    translations: dict[str, list[str]] = {}
    for number, line in enumerate(text.split("\n"), 1):
        columns = line.split()
        if not columns:
            continue
        if len(columns) != 2:
            raise StepstoneError(f"{path}:{number}: expected 2 columns (source target) in a lexicon line, "
                                 f"found {len(columns)}")
        source, target = columns
        known = translations.setdefault(source, [])
        if target not in known:
            known.append(target)
    if not translations:
        raise StepstoneError(f"{path}: empty lexicon (expected 'source target' lines)")
    return {source: tuple(targets) for source, targets in translations.items()}
