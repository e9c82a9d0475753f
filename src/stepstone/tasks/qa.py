"""Extractive QA tasks (SQuAD form): SQuAD v1.1 / v2.0 (intermediate) and the XTREME targets XQuAD, MLQA and
TyDiQA-GoldP, with their datasets' converters. Layouts and language lists as in `tasks.classification`'s
docstring (XQuAD 11, MLQA 7, TyDiQA-GoldP 9)."""
from __future__ import annotations

from typing import Any

from ..data import readers as r
from ..metrics import Metric
from .base import Split, TaskFormat, define
from .sources import Hub, Local, Sources

TRAIN, DEV, TEST = Split.TRAIN, Split.VALIDATION, Split.TEST
Q = TaskFormat.QA
XQUAD_BENCHMARK = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
XQUAD_LANGS = XQUAD_BENCHMARK + ("ro",)  # Romanian: added to deepmind/xquad after XTREME
MLQA_BASE = ("ar", "de", "en", "es", "hi", "vi", "zh")
MLQA_LANGS = MLQA_BASE + tuple(f"{c}.{q}" for c in MLQA_BASE for q in MLQA_BASE if c != q)  # + G-XLT pairs
TYDIQA_LANGS = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
TYDIQA_NAMES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian", "ko": "korean",
                "ru": "russian", "sw": "swahili", "te": "telugu"}


# ------------------------------------------------------------------------------- converters
def _squad(ds: Any, lang: str) -> list[dict]:
    return [{"id": row["id"], "context": row["context"], "question": row["question"],
             "answers": {"text": list(row["answers"]["text"]), "answer_start": list(row["answers"]["answer_start"])}}
            for row in ds]


def _tydiqa(ds: Any, lang: str) -> list[dict]:
    """The hub's TyDiQA-GoldP holds every language in one split: keep `lang`'s (ids start with its name)."""
    return [e for e in _squad(ds, lang) if e["id"].split("-")[0] == TYDIQA_NAMES[lang]]


def _qa_test(task: str, *files: str) -> list:
    """A QA test split's candidates: XTREME's label file (a complete SQuAD file: XTREME blanks the answers of
    the test files it ships), then the given files."""
    return [(f"labels/{task}/test-{{lang}}.json", r.read_squad_json)] + [(f, r.read_squad_json) for f in files]


# ------------------------------------------------------------------------------- intermediate tasks
for _name, _hub, _desc, _v2, _version in (
        ("squad", "rajpurkar/squad", "SQuAD v1.1", False, "v1.1"),
        ("squad-v2", "rajpurkar/squad_v2", "SQuAD v2.0 (with unanswerable questions)", True, "v2.0")):
    define(_name, Q, Metric.SQUAD, _desc, Sources(  # rajpurkar.github.io/SQuAD-explorer names: train-v1.1.json, ...
        local=Local({s: [(f"intermediate/{_name}/{f}.json", r.read_squad_json),
                         (f"intermediate/{_name}/{f}-{_version}.json", r.read_squad_json)]
                     for s, f in ((TRAIN, "train"), (DEV, "dev"))}),
        hub=Hub(_hub, None, {TRAIN: "train", DEV: "validation"}, _squad)), unanswerable=_v2)

# ------------------------------------------------------------------------------- XTREME targets
define("xquad", Q, Metric.SQUAD, "XQuAD (zero-shot from English SQuAD v1.1)", Sources(
    local=Local({TEST: _qa_test("xquad", "target/xquad/xquad.{lang}.json")}),
    hub=Hub("google/xquad", "xquad.{lang}", {TEST: "validation"}, _squad)),
    languages=XQUAD_LANGS, benchmark_languages=XQUAD_BENCHMARK, train_from="squad", dev_from="squad")
# MLQA has its own dev set in every language, English included: only its training data is SQuAD's
define("mlqa", Q, Metric.MLQA, "MLQA: languages 'xx' or context.question pairs 'xx.yy'", Sources(
    local=Local({DEV: [(f"target/mlqa/{folder}dev/dev-context-{{ctx}}-question-{{qst}}.json", r.read_squad_json)
                       for folder in ("", "MLQA_V1/")],  # MLQA_V1.zip unpacked as it is (XTREME's layout)
                 TEST: _qa_test("mlqa", *(f"target/mlqa/{folder}test/test-context-{{ctx}}-question-{{qst}}.json"
                                          for folder in ("", "MLQA_V1/")))}),
    hub=Hub("facebook/mlqa", "mlqa.{lang}", {DEV: "validation", TEST: "test"}, _squad)),
    languages=MLQA_LANGS, benchmark_languages=MLQA_BASE, train_from="squad")
# TyDiQA-GoldP has no test set: XTREME evaluates on its dev set, which is also the English dev set for training
# (English is one of its languages). The original tgz names files tydiqa-goldp-dev-arabic.json; XTREME renames
# them to tydiqa.goldp.ar.dev.json and blanks their answers.
_TYDIQA_DEV = _qa_test("tydiqa", "target/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-{name}.json",
                       "target/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json")
define("tydiqa", Q, Metric.SQUAD, "TyDiQA-GoldP (XTREME evaluates on its dev set)", Sources(
    local=Local({TRAIN: [("target/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.{lang}.train.json", r.read_squad_json)],
                 DEV: _TYDIQA_DEV, TEST: _TYDIQA_DEV}, names=TYDIQA_NAMES),
    hub=Hub("google-research-datasets/tydiqa", "secondary_task", {TRAIN: "train", DEV: "validation",
                                                                  TEST: "validation"}, _tydiqa)),
    languages=TYDIQA_LANGS)
