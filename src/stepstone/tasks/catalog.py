"""The paper's English intermediate tasks and the XTREME target tasks, each registered once.

Local layouts follow ../shared/data (see its README); hub ids are the Hugging Face datasets the XTREME
and jiant loaders use. Labels are kept as the datasets write them (e.g. SST-2 "0"/"1").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import readers as r
from ..metrics import Metric
from .base import Split, TaskFormat, TaskSpec, register
from .sources import Hub, Local, Sources, Union

TRAIN, DEV, TEST = Split.TRAIN, Split.VALIDATION, Split.TEST
NLI = ("entailment", "neutral", "contradiction")
BINARY = ("0", "1")
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")
NER = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
EN = ("en",)


# ------------------------------------------------------------------------------- hub row converters
def _pairs(a: str, b: str, labels: tuple[str, ...] | None = None):
    """Sentence-pair rows; integer labels index `labels` (None: keep the dataset's value as text)."""
    def convert(ds: Any, lang: str) -> list[dict]:
        return [{"text": row[a], "text_pair": row[b], "label": labels[row["label"]] if labels else str(row["label"])}
                for row in ds if row["label"] is not None and row["label"] >= 0]
    return convert


def _single(column: str):
    def convert(ds: Any, lang: str) -> list[dict]:
        return [{"text": row[column], "label": str(row["label"])} for row in ds if row["label"] >= 0]
    return convert


def _tagging(tags: str):
    def convert(ds: Any, lang: str) -> list[dict]:
        names = ds.features[tags].feature
        return [{"tokens": row["tokens"], "tags": [names.int2str(t) if isinstance(t, int) else t for t in row[tags]]}
                for row in ds]
    return convert


def _squad(ds: Any, lang: str) -> list[dict]:
    return [{"id": row["id"], "context": row["context"], "question": row["question"],
             "answers": {"text": list(row["answers"]["text"]), "answer_start": list(row["answers"]["answer_start"])}}
            for row in ds]


def _tydiqa(ds: Any, lang: str) -> list[dict]:
    names = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian", "ko": "korean",
             "ru": "russian", "sw": "swahili", "te": "telugu"}
    return [e for e in _squad(ds, lang) if e["id"].split("-")[0] == names[lang]]


def _rows(shape: r.JsonlShape):
    return lambda ds, lang: r.convert_rows(ds, shape, f"hub:{shape.value}")


def _cosmos(ds: Any, lang: str) -> list[dict]:
    return [{"context": f"{row['context']} {row['question']}", "choices": [row[f"answer{i}"] for i in range(4)],
             "label": int(row["label"])} for row in ds]


def _siqa(ds: Any, lang: str) -> list[dict]:
    return [{"context": f"{row['context']} {row['question']}", "choices": [row["answerA"], row["answerB"], row["answerC"]],
             "label": int(row["label"]) - 1} for row in ds]


def _tatoeba_hub(ds: Any, lang: str) -> list[dict]:
    return [{"source": row["source_sentence"].strip(), "target": row["target_sentence"].strip()} for row in ds]


# ------------------------------------------------------------------------------- local readers
def _tatoeba(path: Path) -> list[dict]:
    return [{"source": s, "target": t} for s, t in r.read_tatoeba(path, path.with_suffix(".eng"))]


def _bucc(gold: Path) -> list[dict]:
    stem = gold.with_suffix("")  # .../zh-en.dev
    src = stem.name.split("-")[0]
    data = r.read_bucc(Path(f"{stem}.{src}"), Path(f"{stem}.en"), gold)
    return [{"source": data.source, "target": data.target, "gold": data.gold}]


def _pairs_tsv(path: Path) -> list[dict]:
    return r.read_pairs_tsv(path, header=False)


def _jsonl(shape: r.JsonlShape):
    return lambda path: r.read_task_jsonl(path, shape)


# ------------------------------------------------------------------------------- registration helpers
def _task(name: str, fmt: TaskFormat, metric: Metric, description: str, sources: Sources, *,
          languages: tuple[str, ...] = EN, labels: tuple[str, ...] = (), num_choices: int = 0,
          train_from: str | None = None, dev_from: str | None = None, open_labels: int = 0,
          unanswerable: bool = False) -> None:
    register(TaskSpec(name=name, format=fmt, metric=metric, languages=languages, source=sources,
                      description=description, labels=labels, num_choices=num_choices, train_from=train_from,
                      dev_from=dev_from, open_labels=open_labels, unanswerable=unanswerable))


C, T, Q, M, R = (TaskFormat.CLASSIFICATION, TaskFormat.TAGGING, TaskFormat.QA, TaskFormat.MULTIPLE_CHOICE,
                 TaskFormat.RETRIEVAL)
ACC = Metric.ACCURACY

# ------------------------------------------------------------------------------- intermediate tasks
_task("mnli", C, ACC, "MultiNLI (GLUE)", Sources(hub=Hub("nyu-mll/glue", "mnli", {
    TRAIN: "train", DEV: "validation_matched"}, _pairs("premise", "hypothesis", NLI))), labels=NLI)
_task("snli", C, ACC, "SNLI", Sources(hub=Hub("stanfordnlp/snli", None, {
    TRAIN: "train", DEV: "validation", TEST: "test"}, _pairs("premise", "hypothesis", NLI))), labels=NLI)
_task("anli", C, ACC, "Adversarial NLI, rounds 1-3", Sources(
    local=Local({s: [(f"intermediate/anli/R1/{f}.jsonl", lambda p: _anli_rounds(p))] for s, f in
                 ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("facebook/anli", None, {TRAIN: "train_r1+train_r2+train_r3", DEV: "dev_r1+dev_r2+dev_r3",
                                     TEST: "test_r1+test_r2+test_r3"}, _pairs("premise", "hypothesis", NLI))),
    labels=NLI)
_task("anli-plus", C, ACC, "ANLI+: ANLI R1-R3 + MNLI + SNLI for training, ANLI dev/test (jiant's full ANLI)",
      Union({TRAIN: ("anli", "mnli", "snli"), DEV: ("anli",), TEST: ("anli",)}), labels=NLI)
_task("qqp", C, ACC, "Quora Question Pairs (GLUE)", Sources(
    local=Local({TRAIN: [("intermediate/qqp/train.tsv", lambda p: r.read_pairs_tsv(p, header=True, columns=(3, 4, 5)))],
                 DEV: [("intermediate/qqp/dev.tsv", lambda p: r.read_pairs_tsv(p, header=True, columns=(3, 4, 5)))]}),
    hub=Hub("nyu-mll/glue", "qqp", {TRAIN: "train", DEV: "validation"}, _pairs("question1", "question2"))),
    labels=BINARY)
_task("sst2", C, ACC, "Stanford Sentiment Treebank (GLUE SST-2)", Sources(
    local=Local({s: [(f"intermediate/sst2/{f}.tsv", r.read_single_tsv)] for s, f in
                 ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("nyu-mll/glue", "sst2", {TRAIN: "train", DEV: "validation"}, _single("sentence"))), labels=BINARY)
for _name, _hub, _desc, _v2 in (("squad", "rajpurkar/squad", "SQuAD v1.1", False),
                                ("squad-v2", "rajpurkar/squad_v2", "SQuAD v2.0 (with unanswerable questions)", True)):
    _task(_name, Q, Metric.SQUAD, _desc, Sources(
        local=Local({TRAIN: [(f"intermediate/{_name}/train.json", r.read_squad_json)],
                     DEV: [(f"intermediate/{_name}/dev.json", r.read_squad_json)]}),
        hub=Hub(_hub, None, {TRAIN: "train", DEV: "validation"}, _squad)), unanswerable=_v2)
_task("hellaswag", M, ACC, "HellaSwag", Sources(
    local=Local({TRAIN: [("intermediate/hellaswag/train.jsonl", _jsonl(r.JsonlShape.HELLASWAG))],
                 DEV: [("intermediate/hellaswag/val.jsonl", _jsonl(r.JsonlShape.HELLASWAG))]}),
    hub=Hub("Rowan/hellaswag", None, {TRAIN: "train", DEV: "validation"}, _rows(r.JsonlShape.HELLASWAG))),
    num_choices=4)
_task("cosmosqa", M, ACC, "Cosmos QA", Sources(
    local=Local({TRAIN: [("intermediate/cosmosqa/train.csv", r.read_cosmosqa_csv)],
                 DEV: [("intermediate/cosmosqa/valid.csv", r.read_cosmosqa_csv)]}),
    hub=Hub("allenai/cosmos_qa", None, {TRAIN: "train", DEV: "validation"}, _cosmos)), num_choices=4)
_task("commonsenseqa", M, ACC, "CommonsenseQA", Sources(
    local=Local({TRAIN: [("intermediate/commonsenseqa/train.jsonl", _jsonl(r.JsonlShape.COMMONSENSEQA))],
                 DEV: [("intermediate/commonsenseqa/dev.jsonl", _jsonl(r.JsonlShape.COMMONSENSEQA))]}),
    hub=Hub("tau/commonsense_qa", None, {TRAIN: "train", DEV: "validation"}, _rows(r.JsonlShape.COMMONSENSEQA))),
    num_choices=5)
_task("siqa", M, ACC, "Social IQa", Sources(
    local=Local({TRAIN: [("intermediate/siqa/socialIQa_v1.4_trn.jsonl", _jsonl(r.JsonlShape.SIQA))],
                 DEV: [("intermediate/siqa/socialIQa_v1.4_dev.jsonl", _jsonl(r.JsonlShape.SIQA))],
                 TEST: [("intermediate/siqa/socialIQa_v1.4_tst.jsonl", _jsonl(r.JsonlShape.SIQA))]}),
    hub=Hub("allenai/social_i_qa", None, {TRAIN: "train", DEV: "validation"}, _siqa)), num_choices=3)
_task("copa", M, ACC, "Choice of Plausible Alternatives (English)", Sources(
    local=Local({s: [(f"intermediate/copa_en/{f}-en.jsonl", _jsonl(r.JsonlShape.COPA))] for s, f in
                 ((TRAIN, "train"), (DEV, "val"), (TEST, "test"))}),
    hub=Hub("aps/super_glue", "copa", {TRAIN: "train", DEV: "validation"}, _rows(r.JsonlShape.COPA))), num_choices=2)


# CCGbank is LDC-licensed: users bring it. Concatenate the usual sections into one AUTO file per split:
# train = 02-21, dev = 00, test = 23. Categories seen >= 10 times in training are the label set (Clark &
# Curran 2007's 425 on sections 02-21), the rest are '<other>'.
_task("ccg", T, Metric.TOKEN_ACCURACY, "CCG supertagging (CCGbank AUTO files; bring your own copy)", Sources(
    local=Local({s: [(f"intermediate/ccg/{f}.auto", r.read_ccg_auto)] for s, f in
                 ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))})), open_labels=10)


def _anli_rounds(r1_path: Path) -> list[dict]:
    """ANLI R1-R3 of one split: the pattern names R1's file; R2 and R3 sit beside it."""
    root, name = r1_path.parent.parent, r1_path.name
    return [e for rnd in ("R1", "R2", "R3") for e in r.read_task_jsonl(root / rnd / name, r.JsonlShape.ANLI)]


# ------------------------------------------------------------------------------- XTREME targets
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGS = ("de", "en", "es", "fr", "ja", "ko", "zh")
UDPOS_LANGS = ("af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id", "it",
               "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur", "vi", "wo", "zh")
PANX_LANGS = ("af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id",
              "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl", "pt", "ru", "sw", "ta", "te", "th",
              "tl", "tr", "ur", "vi", "yo", "zh")
XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
MLQA_BASE = ("ar", "de", "en", "es", "hi", "vi", "zh")
MLQA_LANGS = MLQA_BASE + tuple(f"{c}.{q}" for c in MLQA_BASE for q in MLQA_BASE if c != q)
TYDIQA_LANGS = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
BUCC_LANGS = ("de", "fr", "ru", "zh")
TATOEBA_LANGS = ("af", "ar", "bg", "bn", "de", "el", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id", "it",
                 "ja", "jv", "ka", "kk", "ko", "ml", "mr", "nl", "pt", "ru", "sw", "ta", "te", "th", "tl", "tr", "ur",
                 "vi", "zh")
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
UD_NAMES = {"af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
            "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
            "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
            "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
            "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
            "vi": "Vietnamese", "wo": "Wolof", "zh": "Chinese"}

_task("xnli", C, ACC, "XNLI (zero-shot from English MNLI)", Sources(
    local=Local({DEV: [("target/xnli/dev-{lang}.tsv", _pairs_tsv)], TEST: [("target/xnli/test-{lang}.tsv", _pairs_tsv)]}),
    hub=Hub("facebook/xnli", "{lang}", {DEV: "validation", TEST: "test"}, _pairs("premise", "hypothesis", NLI))),
    languages=XNLI_LANGS, labels=NLI, train_from="mnli")
_task("pawsx", C, ACC, "PAWS-X paraphrase identification", Sources(
    local=Local({s: [(f"target/pawsx/{f}-{{lang}}.tsv", _pairs_tsv)] for s, f in
                 ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("google-research-datasets/paws-x", "{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"},
            _pairs("sentence1", "sentence2"))), languages=PAWSX_LANGS, labels=BINARY)
_task("udpos", T, Metric.TOKEN_ACCURACY, "Universal Dependencies POS tagging (XTREME, UD v2.5+)", Sources(
    local=Local({s: [(f"target/udpos/{f}-{{lang}}.tsv", r.read_tagging_tsv),
                     (f"target/udpos_conllu/{{lang}}_gsd/{{lang}}_gsd-ud-{f}.conllu", r.read_conllu)]
                 for s, f in ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("google/xtreme", "udpos.{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"}, _tagging("pos_tags"),
            langs=UD_NAMES)), languages=UDPOS_LANGS, labels=UPOS)
_task("panx", T, Metric.SEQEVAL_F1, "PAN-X / WikiANN named entities (XTREME split)", Sources(
    local=Local({s: [(f"target/panx/{f}-{{lang}}.tsv", r.read_tagging_tsv)] for s, f in
                 ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("google/xtreme", "PAN-X.{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"}, _tagging("ner_tags"))),
    languages=PANX_LANGS, labels=NER)
_task("xquad", Q, Metric.SQUAD, "XQuAD (zero-shot from English SQuAD v1.1)", Sources(
    local=Local({TEST: [("target/xquad/xquad.{lang}.json", r.read_squad_json)]}),
    hub=Hub("google/xquad", "xquad.{lang}", {TEST: "validation"}, _squad)),
    languages=XQUAD_LANGS, train_from="squad", dev_from="squad")
_task("mlqa", Q, Metric.SQUAD, "MLQA: languages 'xx' or context.question pairs 'xx.yy'", Sources(
    local=Local({DEV: [("target/mlqa/dev/dev-context-{ctx}-question-{qst}.json", r.read_squad_json)],
                 TEST: [("target/mlqa/test/test-context-{ctx}-question-{qst}.json", r.read_squad_json)]}),
    hub=Hub("facebook/mlqa", "mlqa.{lang}", {DEV: "validation", TEST: "test"}, _squad)),
    languages=MLQA_LANGS, train_from="squad", dev_from="squad")
_task("tydiqa", Q, Metric.SQUAD, "TyDiQA-GoldP (XTREME evaluates on its dev set)", Sources(
    local=Local({TRAIN: [("target/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.{lang}.train.json", r.read_squad_json)],
                 TEST: [("target/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json", r.read_squad_json)]}),
    hub=Hub("google-research-datasets/tydiqa", "secondary_task", {TRAIN: "train", TEST: "validation"}, _tydiqa)),
    languages=TYDIQA_LANGS, dev_from="squad")
_task("bucc", R, Metric.BUCC_F1, "BUCC 2018 parallel sentence mining (xx-en, ratio margin)", Sources(
    local=Local({DEV: [("target/bucc2018/{lang}-en.dev.gold", _bucc)], TEST: [("target/bucc2018/{lang}-en.test.gold", _bucc)]})),
    languages=BUCC_LANGS)
_task("tatoeba", R, Metric.RETRIEVAL_ACCURACY, "Tatoeba sentence retrieval (xx -> en, LASER v1 test sets)", Sources(
    local=Local({s: [("target/tatoeba/tatoeba.{lang3}-eng.{lang3}", _tatoeba)] for s in (DEV, TEST)}),
    hub=Hub("google/xtreme", "tatoeba.{lang3}", {DEV: "validation", TEST: "validation"}, _tatoeba_hub)),
    languages=TATOEBA_LANGS)
_task("xcopa", M, ACC, "XCOPA causal commonsense (zero-shot from English COPA)", Sources(
    local=Local({DEV: [("target/xcopa/val.{lang}.jsonl", _jsonl(r.JsonlShape.COPA))],
                 TEST: [("target/xcopa/test.{lang}.jsonl", _jsonl(r.JsonlShape.COPA))]}),
    hub=Hub("cambridgeltl/xcopa", "{lang}", {DEV: "validation", TEST: "test"}, _rows(r.JsonlShape.COPA))),
    languages=XCOPA_LANGS, num_choices=2, train_from="copa", dev_from="copa")
