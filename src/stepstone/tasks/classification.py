"""Classification tasks (one label per sentence or sentence pair): the paper's NLI / paraphrase / sentiment
intermediate tasks and the XTREME targets XNLI and PAWS-X, with their datasets' converters.

Local layouts follow ../shared/data (see its README), with the upstream downloads' own layouts as
alternatives; hub ids are the Hugging Face datasets the XTREME and jiant loaders use. Labels are kept as the
datasets write them (e.g. SST-2 "0"/"1"). The benchmark language lists are XTREME's official scorer's
(google-research/xtreme evaluate.py, TASK2LANGS; Hu et al. 2020, Table 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import readers as r
from ..errors import choices
from ..metrics import Metric
from . import rows
from .base import Split, TaskFormat, define
from .rows import JsonlShape, RowError
from .sources import Hub, Local, Sources, Union, xtreme_test

TRAIN, DEV, TEST = Split.TRAIN, Split.VALIDATION, Split.TEST
C, ACC = TaskFormat.CLASSIFICATION, Metric.ACCURACY
NLI = ("entailment", "neutral", "contradiction")
BINARY = ("0", "1")
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGS = ("de", "en", "es", "fr", "ja", "ko", "zh")


# ------------------------------------------------------------------------------- converters
_ANLI_LABELS = {"e": "entailment", "n": "neutral", "c": "contradiction"}


@rows.row_shape(JsonlShape.ANLI, label_key="label")
def _anli(row: dict, n: int | None = None) -> dict:
    """ANLI (facebookresearch/anli): context, hypothesis, label e/n/c -> classification."""
    label = rows.get(row, "label")
    label = _ANLI_LABELS.get(label, label) if isinstance(label, str) else label
    if label not in _ANLI_LABELS.values():
        raise RowError(f"label '{label}' is not one of {choices(_ANLI_LABELS)}")
    return {"text": rows.text(row, "context"), "text_pair": rows.text(row, "hypothesis"), "label": label}


def _anli_rounds(r1_path: Path) -> list[dict]:
    """ANLI R1-R3 of one split: the pattern names R1's file; R2 and R3 sit beside it."""
    root, name = r1_path.parent.parent, r1_path.name
    return [e for rnd in ("R1", "R2", "R3") for e in rows.read_task_jsonl(root / rnd / name, JsonlShape.ANLI)]


def _pairs(a: str, b: str, labels: tuple[str, ...] | None = None):
    """Sentence-pair hub rows; integer labels index `labels` (None: keep the dataset's value as text)."""
    def convert(ds: Any, lang: str) -> list[dict]:
        return [{"text": row[a], "text_pair": row[b], "label": labels[row["label"]] if labels else str(row["label"])}
                for row in ds if row["label"] is not None and row["label"] >= 0]
    return convert


def _single(column: str):
    def convert(ds: Any, lang: str) -> list[dict]:
        return [{"text": row[column], "label": str(row["label"])} for row in ds if row["label"] >= 0]
    return convert


def _pairs_tsv(path: Path) -> list[dict]:
    return r.read_pairs_tsv(path, header=False)


def _qqp_tsv(path: Path) -> list[dict]:
    return r.read_pairs_tsv(path, header=True, columns=(3, 4, 5))


# ------------------------------------------------------------------------------- intermediate tasks
define("mnli", C, ACC, "MultiNLI (GLUE)", Sources(hub=Hub("nyu-mll/glue", "mnli", {
    TRAIN: "train", DEV: "validation_matched"}, _pairs("premise", "hypothesis", NLI))), labels=NLI)
define("snli", C, ACC, "SNLI", Sources(hub=Hub("stanfordnlp/snli", None, {
    TRAIN: "train", DEV: "validation", TEST: "test"}, _pairs("premise", "hypothesis", NLI))), labels=NLI)
define("anli", C, ACC, "Adversarial NLI, rounds 1-3", Sources(
    local=Local({s: [(f"intermediate/anli/R1/{f}.jsonl", _anli_rounds),
                     (f"intermediate/anli/anli_v1.0/R1/{f}.jsonl", _anli_rounds)]  # anli_v1.0.zip
                 for s, f in ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("facebook/anli", None, {TRAIN: "train_r1+train_r2+train_r3", DEV: "dev_r1+dev_r2+dev_r3",
                                     TEST: "test_r1+test_r2+test_r3"}, _pairs("premise", "hypothesis", NLI))),
    labels=NLI)
define("anli-plus", C, ACC, "ANLI+: ANLI R1-R3 + MNLI + SNLI for training, ANLI dev/test (jiant's full ANLI)",
       Union({TRAIN: ("anli", "mnli", "snli"), DEV: ("anli",), TEST: ("anli",)}), labels=NLI)
define("qqp", C, ACC, "Quora Question Pairs (GLUE)", Sources(
    local=Local({TRAIN: [("intermediate/qqp/train.tsv", _qqp_tsv)], DEV: [("intermediate/qqp/dev.tsv", _qqp_tsv)]}),
    hub=Hub("nyu-mll/glue", "qqp", {TRAIN: "train", DEV: "validation"}, _pairs("question1", "question2"))),
    labels=BINARY)
define("sst2", C, ACC, "Stanford Sentiment Treebank (GLUE SST-2)", Sources(
    local=Local({s: [(f"intermediate/sst2/{f}.tsv", r.read_single_tsv)] for s, f in
                 ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("nyu-mll/glue", "sst2", {TRAIN: "train", DEV: "validation"}, _single("sentence"))), labels=BINARY)

# ------------------------------------------------------------------------------- XTREME targets
define("xnli", C, ACC, "XNLI (zero-shot from English MNLI)", Sources(
    local=Local({DEV: [("target/xnli/dev-{lang}.tsv", _pairs_tsv)],
                 TEST: xtreme_test("target/xnli/test-{lang}.tsv", "xnli", _pairs_tsv, r.read_pairs_with_labels)}),
    hub=Hub("facebook/xnli", "{lang}", {DEV: "validation", TEST: "test"}, _pairs("premise", "hypothesis", NLI))),
    languages=XNLI_LANGS, labels=NLI, train_from="mnli")
define("pawsx", C, ACC, "PAWS-X paraphrase identification", Sources(
    local=Local({TRAIN: [("target/pawsx/train-{lang}.tsv", _pairs_tsv)], DEV: [("target/pawsx/dev-{lang}.tsv", _pairs_tsv)],
                 TEST: xtreme_test("target/pawsx/test-{lang}.tsv", "pawsx", _pairs_tsv, r.read_pairs_with_labels)}),
    hub=Hub("google-research-datasets/paws-x", "{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"},
            _pairs("sentence1", "sentence2"))), languages=PAWSX_LANGS, labels=BINARY)
