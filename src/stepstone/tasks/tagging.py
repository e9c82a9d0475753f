"""Tagging tasks (one tag per token): CCG supertagging (intermediate) and the XTREME targets UD-POS and PAN-X,
with their datasets' converters. Layouts and language lists as in `tasks.classification`'s docstring."""
from __future__ import annotations

from typing import Any

from ..data import readers as r
from ..metrics import Metric
from .base import Split, TaskFormat, define
from .sources import Hub, Local, Sources, xtreme_test

TRAIN, DEV, TEST = Split.TRAIN, Split.VALIDATION, Split.TEST
T = TaskFormat.TAGGING
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")
NER = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
# UD-POS 33 (v1: with Yoruba, without XTREME-R's lt pl uk wo ro), PAN-X 40
UDPOS_LANGS = ("af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id", "it",
               "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur", "vi", "yo", "zh")
PANX_LANGS = ("af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id",
              "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl", "pt", "ru", "sw", "ta", "te", "th",
              "tl", "tr", "ur", "vi", "yo", "zh")
UD_NAMES = {"af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
            "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
            "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
            "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
            "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
            "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese"}


# ------------------------------------------------------------------------------- converters
def _tagging(tags: str):
    """Hub rows with `tokens` and a tag column (class-label ids or names)."""
    def convert(ds: Any, lang: str) -> list[dict]:
        names = ds.features[tags].feature
        return [{"tokens": row["tokens"], "tags": [names.int2str(t) if isinstance(t, int) else t for t in row[tags]]}
                for row in ds]
    return convert


# ------------------------------------------------------------------------------- intermediate tasks
# CCGbank is LDC-licensed: users bring it. Concatenate the usual sections into one AUTO file per split:
# train = 02-21, dev = 00, test = 23. Categories seen >= 10 times in training are the label set (Clark &
# Curran 2007's 425 on sections 02-21), the rest are '<other>'.
define("ccg", T, Metric.TOKEN_ACCURACY, "CCG supertagging (CCGbank AUTO files; bring your own copy)", Sources(
    local=Local({s: [(f"intermediate/ccg/{f}.auto", r.read_ccg_auto)] for s, f in
                 ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))})), open_labels=10)

# ------------------------------------------------------------------------------- XTREME targets
define("udpos", T, Metric.POS_F1, "Universal Dependencies POS tagging (XTREME, UD v2.5+)", Sources(
    local=Local({s: (xtreme_test(f"target/udpos/{f}-{{lang}}.tsv", "udpos", r.read_tagging_tsv,
                                 r.read_tagging_with_labels) if s is TEST else
                     [(f"target/udpos/{f}-{{lang}}.tsv", r.read_tagging_tsv)])
                 + [(f"target/udpos_conllu/{{lang}}_gsd/{{lang}}_gsd-ud-{f}.conllu", r.read_conllu)]
                 for s, f in ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("google/xtreme", "udpos.{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"}, _tagging("pos_tags"),
            langs=UD_NAMES)), languages=UDPOS_LANGS, labels=UPOS)
define("panx", T, Metric.SEQEVAL_F1, "PAN-X / WikiANN named entities (XTREME split)", Sources(
    local=Local({TRAIN: [("target/panx/train-{lang}.tsv", r.read_tagging_tsv)],
                 DEV: [("target/panx/dev-{lang}.tsv", r.read_tagging_tsv)],
                 TEST: xtreme_test("target/panx/test-{lang}.tsv", "panx", r.read_tagging_tsv,
                                   r.read_tagging_with_labels)}),
    hub=Hub("google/xtreme", "PAN-X.{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"}, _tagging("ner_tags"))),
    languages=PANX_LANGS, labels=NER)
