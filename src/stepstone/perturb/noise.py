"""The registered kinds (typo, dropout, codeswitch) and the text machinery they share: characters as grapheme
clusters (a base character with its combining marks, never split), their script, words within a text.

Words are whitespace-separated (whitespace itself is never changed, so word boundaries hold). Scripts written
without spaces (Chinese, Japanese, Thai) have no word boundaries in running text: dropout and codeswitch then see
whole clauses; their tagging tasks give tokens, which are perturbed one by one.
"""
from __future__ import annotations

import random
import re
import unicodedata
from typing import Iterable, Mapping

from .spec import Perturbation, register

_JOINERS = {"\u200c", "\u200d"}  # ZWNJ / ZWJ: part of the cluster they sit in
_SPACE = re.compile(r"(\s+)")


def clusters(text: str) -> list[str]:
    """`text` as grapheme clusters (approximately): each base character with the combining marks (Unicode
    category M*) and joiners that follow it, so that no edit leaves a mark without its base."""
    out: list[str] = []
    for char in text:
        if out and (unicodedata.category(char).startswith("M") or char in _JOINERS or out[-1][-1] in _JOINERS):
            out[-1] += char
        else:
            out.append(char)
    return out


def script(cluster: str) -> str:
    """The script of a cluster's base character: for letters the first word of its Unicode name (LATIN, GREEK,
    CYRILLIC, CJK, HIRAGANA, DEVANAGARI, ...; the standard library has no Script property); for anything else
    its general category's class (N digits, P punctuation, S symbols, ...)."""
    base = cluster[0]
    category = unicodedata.category(base)
    if category.startswith("L"):
        name = unicodedata.name(base, "")
        return name.split(" ", 1)[0] if name else category
    return category[0]


def character_pool(texts: Iterable[str]) -> dict[str, list[str]]:
    """Script -> the distinct clusters of `texts` in that script, in order of first appearance."""
    pool: dict[str, dict[str, None]] = {}
    for text in texts:
        for cluster in clusters(text):
            if not cluster.isspace():
                pool.setdefault(script(cluster), {})[cluster] = None
    return {key: list(found) for key, found in pool.items()}


# ------------------------------------------------------------------------------------------------- kinds
_EDITS = ("insert", "delete", "substitute", "swap")


def _typo_word(word: str, rate: float, rng: random.Random, pool: Mapping[str, list[str]]) -> str:
    """Each cluster, at `rate`, gets one edit: a cluster of its script from the example inserted after it,
    deleted (never the word's last one), substituted by another of its script, or swapped with the next."""
    units, out, i = clusters(word), [], 0
    while i < len(units):
        unit = units[i]
        if unit.isspace() or rng.random() >= rate:
            out.append(unit)
            i += 1
            continue
        edit, same = rng.choice(_EDITS), pool.get(script(unit), [unit])
        if edit == "insert":
            out += [unit, rng.choice(same)]
        elif edit == "delete" and out + units[i + 1:]:
            pass
        elif edit == "substitute" and len(same) > 1:
            out.append(rng.choice([c for c in same if c != unit]))
        elif edit == "swap" and i + 1 < len(units) and not units[i + 1].isspace():
            out += [units[i + 1], unit]
            i += 1
        else:  # the edit cannot apply here: the cluster stays
            out.append(unit)
        i += 1
    return "".join(out)


def typo(perturbation: Perturbation, words: list[str], rng: random.Random, pool: Mapping[str, list[str]],
         others_kept: bool) -> list[str | None]:
    return [_typo_word(word, perturbation.rate, rng, pool) for word in words]


def dropout(perturbation: Perturbation, words: list[str], rng: random.Random, pool: Mapping[str, list[str]],
            others_kept: bool) -> list[str | None]:
    """Each word dropped at the rate; when that would drop every word of a text, one (drawn) stays."""
    kept: list[str | None] = [None if rng.random() < perturbation.rate else word for word in words]
    if words and not others_kept and all(word is None for word in kept):
        stay = rng.randrange(len(words))
        kept[stay] = words[stay]
    return kept


def _edges(word: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation): `"cat."` is looked up as `cat`."""
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(word[end - 1]).startswith("P"):
        end -= 1
    return word[:start], word[start:end], word[end:]


def codeswitch(perturbation: Perturbation, words: list[str], rng: random.Random, pool: Mapping[str, list[str]],
               others_kept: bool) -> list[str | None]:
    """Each word found in the lexicon (as it is, else lowercased; punctuation around it kept) replaced, at the
    rate, by one of its translations (drawn with the example's generator: deterministic by seed)."""
    out: list[str | None] = []
    for word in words:
        lead, core, trail = _edges(word)
        translations = perturbation.translations.get(core) or perturbation.translations.get(core.lower())
        if translations and rng.random() < perturbation.rate:
            out.append(lead + (translations[0] if len(translations) == 1 else rng.choice(translations)) + trail)
        else:
            out.append(word)
    return out


register("typo", typo, "character insertions, deletions, substitutions and adjacent swaps at RATE per character, "
                       "drawn from the example's own characters of the same script")
register("dropout", dropout, "each word dropped at RATE (never every word of a text)")
register("codeswitch", codeswitch, "RATE of the words found in LEXICON (two columns: source target) replaced by a "
                                   "translation", needs_lexicon=True)


# ------------------------------------------------------------------------------------------------- texts
def split_words(text: str) -> list[str]:
    """`text` as alternating [word, separator, word, ..., word]: even indexes are words (maybe empty at the
    edges), odd ones whitespace; `"".join` gives `text` back."""
    return _SPACE.split(text)


def join_words(parts: list[str], new: list[str | None]) -> str:
    """`parts` (from `split_words`) with its non-empty words replaced by `new`, in order. A dropped word (None)
    takes the whitespace before it along (the first kept word's goes instead), so no two separators meet; the
    text's leading and trailing whitespace stay."""
    if not any(parts[0::2]):  # empty, or whitespace only
        return "".join(parts)
    words, out = iter(new), []
    for j in range(0, len(parts), 2):
        if parts[j]:
            word = next(words)
            if word is not None:
                out.append((parts[j - 1] if out and j else "") + word)
    lead = parts[1] if not parts[0] else ""
    trail = parts[-2] if not parts[-1] else ""
    return lead + "".join(out) + trail
