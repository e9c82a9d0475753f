"""The code-switching lexicon of the cpu-medium grid (issue 18): German, French, Spanish and Arabic words -> English,
in MUSE's two-column format (`stepstone.perturb.lexicon`), from the FreeDict dictionaries Debian packages.

    python benchmarks/lexicon.py --out ~/.cache/stepstone/lexicons/xx-en.txt

`codeswitch:LEXICON:RATE` then replaces RATE of the words of a German, French, Spanish or Arabic example that the
lexicon has by an English translation (the code-switched input of Qin et al. 2020's CoSDA-ML, at evaluation).
FreeDict is GPL: the lexicon is built on the user's machine (`apt-get download`, no root needed) and never
committed. Only one-word headwords and one-word translations are kept, at most 3 per word, in the dictionary's
order; one file serves all four languages (a word spelt alike in two of them gets both languages' translations).
"""
from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = {"deu": "dict-freedict-deu-eng", "fra": "dict-freedict-fra-eng", "spa": "dict-freedict-spa-eng",
            "ara": "dict-freedict-ara-eng"}
MOST = 3  # translations kept per word
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(text: str) -> int:
    """A dictd index offset or length (base 64, most significant digit first)."""
    value = 0
    for char in text:
        value = value * 64 + _B64.index(char)
    return value


def entries(index: Path, data: bytes):
    """(headword, translations) of every one-word entry of a dictd dictionary (several entries of one word each
    give theirs)."""
    for line in index.read_text(encoding="utf-8").splitlines():
        name, offset, length = line.split("\t")[:3]
        if name.startswith("00"):
            continue  # the database's own header entries
        text = data[dictd_number(offset):dictd_number(offset) + dictd_number(length)].decode("utf-8", "replace")
        first, *senses = text.splitlines()
        headword = re.split(r" [/<(]", first, maxsplit=1)[0].strip()
        if len(headword.split()) != 1:
            continue  # a phrase: codeswitch replaces one word
        translations = []
        for sense in senses:
            if not sense.strip() or sense[:1].isspace():
                continue  # examples, notes, synonyms and cross-references are indented
            sense = re.sub(r"^\d+\.\s*", "", sense)
            sense = re.sub(r"<[^>]*>|\[[^]]*\]|\([^)]*\)|\{[^}]*\}", " ", sense)
            for word in (w.strip() for w in re.split(r"[,;]", sense)):
                if len(word.split()) == 1 and word.isalpha() and word not in translations:
                    translations.append(word)
        if translations:
            yield headword, translations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--debs", type=Path, default=None, help="a folder holding the .deb files already")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.debs or Path(tmp)
        if args.debs is None:
            done = subprocess.run(["apt-get", "download", *PACKAGES.values()], cwd=tmp, capture_output=True,
                                  text=True)
            if done.returncode:
                sys.exit(f"error: apt-get download failed: {done.stderr.strip().splitlines()[-1:]}")
        lines, counts = [], {}
        for lang, package in PACKAGES.items():
            debs = sorted(folder.glob(f"{package}_*.deb"))
            if not debs:
                sys.exit(f"error: no {package}_*.deb in {folder}")
            unpacked = Path(tmp) / lang
            subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], check=True)
            share = unpacked / "usr" / "share" / "dictd"
            data = gzip.open(share / f"freedict-{lang}-eng.dict.dz").read()
            merged: dict[str, list[str]] = {}
            for word, translations in entries(share / f"freedict-{lang}-eng.index", data):
                kept = merged.setdefault(word, [])
                kept += [t for t in translations if t not in kept]
            counts[lang] = len(merged)
            lines += [f"{word}\t{english}\n" for word, translations in merged.items() for english in translations[:MOST]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text("".join(lines), encoding="utf-8")
    partial.replace(args.out)
    print(f"wrote {args.out}: {len(lines)} pairs, words per language {counts}")


if __name__ == "__main__":
    main()
