"""Retrieval tasks (evaluation only, no training): the XTREME targets BUCC 2018 and Tatoeba, with their
datasets' converters. Layouts and language lists as in `tasks.classification`'s docstring (BUCC 4, Tatoeba 36)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import readers as r
from ..metrics import Metric
from .base import Split, TaskFormat, define
from .sources import Hub, Local, Sources, Together

DEV, TEST = Split.VALIDATION, Split.TEST
R = TaskFormat.RETRIEVAL
BUCC_LANGS = ("de", "fr", "ru", "zh")
TATOEBA_LANGS = ("af", "ar", "bg", "bn", "de", "el", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id", "it",
                 "ja", "jv", "ka", "kk", "ko", "ml", "mr", "nl", "pt", "ru", "sw", "ta", "te", "th", "tl", "tr", "ur",
                 "vi", "zh")


# ------------------------------------------------------------------------------- converters
def _tatoeba(path: Path) -> list[dict]:
    return [{"source": s, "target": t} for s, t in r.read_tatoeba(path, path.with_suffix(".eng"))]


def _tatoeba_with_labels(src: Path, eng: Path, labels: Path) -> list[dict]:
    return [{"source": s, "target": t} for s, t in r.read_tatoeba_with_labels(src, eng, labels)]


def _tatoeba_hub(ds: Any, lang: str) -> list[dict]:
    return [{"source": row["source_sentence"].strip(), "target": row["target_sentence"].strip()} for row in ds]


def _bucc(gold: Path) -> list[dict]:
    stem = gold.with_suffix("")  # .../zh-en.dev
    src = stem.name.split("-")[0]
    return _bucc_files(Path(f"{stem}.{src}"), Path(f"{stem}.en"), gold)


def _bucc_files(source: Path, target: Path, gold: Path) -> list[dict]:
    data = r.read_bucc(source, target, gold)
    return [{"source": data.source, "target": data.target, "gold": data.gold}]


# ------------------------------------------------------------------------------- XTREME targets
define("bucc", R, Metric.BUCC_F1, "BUCC 2018 parallel sentence mining (xx-en, ratio margin)", Sources(
    local=Local({DEV: [("target/bucc2018/{lang}-en.dev.gold", _bucc)],
                 TEST: [("target/bucc2018/{lang}-en.test.gold", _bucc),
                        # XTREME removes the test gold: labels/bucc2018/test-LANG.tsv holds it
                        Together(("target/bucc2018/{lang}-en.test.{lang}", "target/bucc2018/{lang}-en.test.en",
                                  "labels/bucc2018/test-{lang}.tsv"), _bucc_files)]})),
    languages=BUCC_LANGS)
define("tatoeba", R, Metric.RETRIEVAL_ACCURACY, "Tatoeba sentence retrieval (xx -> en, LASER v1 test sets)", Sources(
    local=Local({DEV: [("target/tatoeba/tatoeba.{lang3}-eng.{lang3}", _tatoeba)],
                 TEST: [("target/tatoeba/tatoeba.{lang3}-eng.{lang3}", _tatoeba),
                        # XTREME's copy: LANG-en.LANG, LANG-en.en sorted, the alignment in labels/tatoeba/
                        Together(("target/tatoeba/{lang}-en.{lang}", "target/tatoeba/{lang}-en.en",
                                  "labels/tatoeba/test-{lang}.tsv"), _tatoeba_with_labels)]}),
    hub=Hub("google/xtreme", "tatoeba.{lang3}", {DEV: "validation", TEST: "validation"}, _tatoeba_hub)),
    languages=TATOEBA_LANGS)
