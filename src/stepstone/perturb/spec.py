"""Perturbation specs: `KIND:ARGS` text -> a frozen `Perturbation`, with every problem one clear line.

Grammar: `typo:RATE`, `dropout:RATE`, `codeswitch:LEXICON:RATE`; RATE a number from 0 to 1. The kinds are a
registry (`KINDS`): a new kind registers its name, its argument grammar and its noise function once.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol

from ..errors import StepstoneError
from ..registry import Registry


class Noise(Protocol):
    """A kind's word-level operation: `words` -> one entry per word, the new word or None (dropped).
    `pool`: script -> the example's own characters (grapheme clusters) of that script; `others_kept`: whether
    the text keeps something besides these words (a QA context's answers), so dropping every word is allowed."""

    def __call__(self, perturbation: "Perturbation", words: list[str], rng: random.Random,
                 pool: Mapping[str, list[str]], others_kept: bool) -> list[str | None]: ...


@dataclass(frozen=True)
class Kind:
    name: str
    needs_lexicon: bool
    noise: Noise
    help: str

    @property
    def grammar(self) -> str:
        return f"{self.name}:LEXICON:RATE" if self.needs_lexicon else f"{self.name}:RATE"


KINDS: Registry[Kind] = Registry("perturbation")


def register(name: str, noise: Noise, help: str, needs_lexicon: bool = False) -> Kind:
    return KINDS.register(name, Kind(name, needs_lexicon, noise, help))


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: its kind, rate (0 = the identity) and, for codeswitch, the lexicon file as written in
    the spec (`lexicon`) and its translations (source word -> translations in file order).
    `label` is the canonical spec (`typo:0.05`), the key of its scores in reports."""

    kind: str
    rate: float
    lexicon: str | None = None
    translations: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        kind = KINDS.get(self.kind)
        if not (isinstance(self.rate, (int, float)) and math.isfinite(self.rate) and 0 <= self.rate <= 1):
            raise StepstoneError(f"perturbation '{self.label}': rate {self.rate} is outside 0-1")
        if kind.needs_lexicon != (self.lexicon is not None):
            raise StepstoneError(f"perturbation '{self.label}': expected {kind.grammar}")

    @property
    def label(self) -> str:
        rate = f"{self.rate:g}" if isinstance(self.rate, (int, float)) else str(self.rate)
        return ":".join([self.kind, *([self.lexicon] if self.lexicon is not None else []), rate])

    @property
    def noise(self) -> Noise:
        return KINDS.get(self.kind).noise


def parse(text: str, base: Path | None = None) -> Perturbation:
    """A spec `KIND:ARGS` as a Perturbation. A lexicon path is relative to `base` (default: the current
    directory) and is read here, so a bad lexicon fails before anything else happens."""
    kind_name, _, rest = str(text).strip().partition(":")
    if kind_name not in KINDS:
        raise StepstoneError(f"perturbation '{text}': {KINDS.unknown(kind_name)}")
    kind = KINDS.get(kind_name)
    fields = rest.rsplit(":", 1) if kind.needs_lexicon else rest.split(":")
    expected = 2 if kind.needs_lexicon else 1
    if not rest or len(fields) != expected or not all(fields):
        found = f", found {len(fields) + 1} fields" if rest and len(fields) > expected else ""
        raise StepstoneError(f"perturbation '{text}': expected {kind.grammar} (RATE from 0 to 1){found}")
    rate = _rate(text, fields[-1])
    if not kind.needs_lexicon:
        return Perturbation(kind_name, rate)
    from .lexicon import read_lexicon

    lexicon = fields[0]
    path = Path(lexicon) if base is None or Path(lexicon).is_absolute() else Path(base) / lexicon
    return Perturbation(kind_name, rate, lexicon, read_lexicon(path))


def _rate(text: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise StepstoneError(f"perturbation '{text}': rate '{value}' is not a number (RATE from 0 to 1)") from None
    if not (math.isfinite(rate) and 0 <= rate <= 1):
        raise StepstoneError(f"perturbation '{text}': rate {value} is outside 0-1")
    return rate
