"""The paper's English intermediate tasks and the XTREME target tasks, each registered once.

Local layouts follow ../shared/data (see its README), with the upstream downloads' own layouts as
alternatives (MLQA_V1/, XCOPA's data/LANG/, XTREME's unlabelled test files + labels/TASK/test-LANG.EXT, the
original SQuAD / HellaSwag / CommonsenseQA / TyDiQA file names); hub ids are the Hugging Face datasets the
XTREME and jiant loaders use. Labels are kept as the datasets write them (e.g. SST-2 "0"/"1").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import readers as r
from ..metrics import Metric
from .base import Split, TaskFormat, TaskSpec, register
from .sources import Hub, Local, Sources, Together, Union

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


def _rows(shape: r.JsonlShape, num_choices: int | None = None):
    return lambda ds, lang: r.convert_rows(ds, shape, f"hub:{shape.value}", num_choices)


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


def _tatoeba_with_labels(src: Path, eng: Path, labels: Path) -> list[dict]:
    return [{"source": s, "target": t} for s, t in r.read_tatoeba_with_labels(src, eng, labels)]


def _bucc(gold: Path) -> list[dict]:
    stem = gold.with_suffix("")  # .../zh-en.dev
    src = stem.name.split("-")[0]
    return _bucc_files(Path(f"{stem}.{src}"), Path(f"{stem}.en"), gold)


def _bucc_files(source: Path, target: Path, gold: Path) -> list[dict]:
    data = r.read_bucc(source, target, gold)
    return [{"source": data.source, "target": data.target, "gold": data.gold}]


def _pairs_tsv(path: Path) -> list[dict]:
    return r.read_pairs_tsv(path, header=False)


def _jsonl(shape: r.JsonlShape, num_choices: int | None = None):
    return lambda path: r.read_task_jsonl(path, shape, num_choices)


def _xtreme_test(inputs: str, task: str, read_plain, read_paired) -> list:
    """An XTREME test file's candidates: the file with its labels from XTREME's label folder
    (`labels/TASK/test-{lang}.tsv`; XTREME's preprocessing removes them from the test file), else the file
    as it is (labelled, e.g. from the original dataset)."""
    return [Together((inputs, f"labels/{task}/test-{{lang}}.tsv"), read_paired), (inputs, read_plain)]


# ------------------------------------------------------------------------------- registration helpers
def _task(name: str, fmt: TaskFormat, metric: Metric, description: str, sources: Sources, *,
          languages: tuple[str, ...] = EN, labels: tuple[str, ...] = (), num_choices: int = 0,
          train_from: str | None = None, dev_from: str | None = None, open_labels: int = 0,
          unanswerable: bool = False, benchmark_languages: tuple[str, ...] = ()) -> None:
    register(TaskSpec(name=name, format=fmt, metric=metric, languages=languages, source=sources,
                      description=description, labels=labels, num_choices=num_choices, train_from=train_from,
                      dev_from=dev_from, open_labels=open_labels, unanswerable=unanswerable,
                      benchmark_languages=benchmark_languages))


C, T, Q, M, R = (TaskFormat.CLASSIFICATION, TaskFormat.TAGGING, TaskFormat.QA, TaskFormat.MULTIPLE_CHOICE,
                 TaskFormat.RETRIEVAL)
ACC = Metric.ACCURACY

# ------------------------------------------------------------------------------- intermediate tasks
_task("mnli", C, ACC, "MultiNLI (GLUE)", Sources(hub=Hub("nyu-mll/glue", "mnli", {
    TRAIN: "train", DEV: "validation_matched"}, _pairs("premise", "hypothesis", NLI))), labels=NLI)
_task("snli", C, ACC, "SNLI", Sources(hub=Hub("stanfordnlp/snli", None, {
    TRAIN: "train", DEV: "validation", TEST: "test"}, _pairs("premise", "hypothesis", NLI))), labels=NLI)
_task("anli", C, ACC, "Adversarial NLI, rounds 1-3", Sources(
    local=Local({s: [(f"intermediate/anli/R1/{f}.jsonl", lambda p: _anli_rounds(p)),
                     (f"intermediate/anli/anli_v1.0/R1/{f}.jsonl", lambda p: _anli_rounds(p))]  # anli_v1.0.zip
                 for s, f in ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
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
for _name, _hub, _desc, _v2, _version in (
        ("squad", "rajpurkar/squad", "SQuAD v1.1", False, "v1.1"),
        ("squad-v2", "rajpurkar/squad_v2", "SQuAD v2.0 (with unanswerable questions)", True, "v2.0")):
    _task(_name, Q, Metric.SQUAD, _desc, Sources(  # rajpurkar.github.io/SQuAD-explorer names: train-v1.1.json, ...
        local=Local({s: [(f"intermediate/{_name}/{f}.json", r.read_squad_json),
                         (f"intermediate/{_name}/{f}-{_version}.json", r.read_squad_json)]
                     for s, f in ((TRAIN, "train"), (DEV, "dev"))}),
        hub=Hub(_hub, None, {TRAIN: "train", DEV: "validation"}, _squad)), unanswerable=_v2)
_task("hellaswag", M, ACC, "HellaSwag", Sources(  # rowanz/hellaswag data/: hellaswag_train.jsonl, hellaswag_val.jsonl
    local=Local({s: [(f"intermediate/hellaswag/{f}.jsonl", _jsonl(r.JsonlShape.HELLASWAG, 4)),
                     (f"intermediate/hellaswag/hellaswag_{f}.jsonl", _jsonl(r.JsonlShape.HELLASWAG, 4))]
                 for s, f in ((TRAIN, "train"), (DEV, "val"))}),
    hub=Hub("Rowan/hellaswag", None, {TRAIN: "train", DEV: "validation"}, _rows(r.JsonlShape.HELLASWAG, 4))),
    num_choices=4)
_task("cosmosqa", M, ACC, "Cosmos QA", Sources(
    local=Local({TRAIN: [("intermediate/cosmosqa/train.csv", r.read_cosmosqa_csv)],
                 DEV: [("intermediate/cosmosqa/valid.csv", r.read_cosmosqa_csv)]}),
    hub=Hub("allenai/cosmos_qa", None, {TRAIN: "train", DEV: "validation"}, _cosmos)), num_choices=4)
_task("commonsenseqa", M, ACC, "CommonsenseQA", Sources(
    local=Local({s: [(f"intermediate/commonsenseqa/{f}.jsonl", _jsonl(r.JsonlShape.COMMONSENSEQA, 5)),
                     # the original release (tau-nlp.github.io/commonsenseqa): train_rand_split.jsonl, ...
                     (f"intermediate/commonsenseqa/{f}_rand_split.jsonl", _jsonl(r.JsonlShape.COMMONSENSEQA, 5))]
                 for s, f in ((TRAIN, "train"), (DEV, "dev"))}),
    hub=Hub("tau/commonsense_qa", None, {TRAIN: "train", DEV: "validation"}, _rows(r.JsonlShape.COMMONSENSEQA, 5))),
    num_choices=5)
_task("siqa", M, ACC, "Social IQa", Sources(
    local=Local({TRAIN: [("intermediate/siqa/socialIQa_v1.4_trn.jsonl", _jsonl(r.JsonlShape.SIQA, 3))],
                 DEV: [("intermediate/siqa/socialIQa_v1.4_dev.jsonl", _jsonl(r.JsonlShape.SIQA, 3))],
                 TEST: [("intermediate/siqa/socialIQa_v1.4_tst.jsonl", _jsonl(r.JsonlShape.SIQA, 3))]}),
    hub=Hub("allenai/social_i_qa", None, {TRAIN: "train", DEV: "validation"}, _siqa)), num_choices=3)
_task("copa", M, ACC, "Choice of Plausible Alternatives (English)", Sources(
    local=Local({s: [(f"intermediate/copa_en/{f}-en.jsonl", _jsonl(r.JsonlShape.COPA, 2)),
                     (f"intermediate/COPA/{f}.jsonl", _jsonl(r.JsonlShape.COPA, 2)),  # SuperGLUE's COPA.zip
                     (f"target/xcopa/{f}.en.jsonl", _jsonl(r.JsonlShape.COPA, 2))]  # XTREME's download_xcopa
                 for s, f in ((TRAIN, "train"), (DEV, "val"), (TEST, "test"))}),
    hub=Hub("aps/super_glue", "copa", {TRAIN: "train", DEV: "validation"}, _rows(r.JsonlShape.COPA, 2))),
    num_choices=2)


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
# The benchmark's language lists, as XTREME's official scorer has them (google-research/xtreme evaluate.py,
# TASK2LANGS; Hu et al. 2020, Table 1): XNLI 15, PAWS-X 7, UD-POS 33 (v1: with Yoruba, without XTREME-R's
# lt pl uk wo ro), PAN-X 40, XQuAD 11, MLQA 7, TyDiQA-GoldP 9, BUCC 4, Tatoeba 36. XCOPA is XTREME-R's
# (scripts/download_data.sh, download_xcopa). Other languages evaluate from local files when they exist.
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGS = ("de", "en", "es", "fr", "ja", "ko", "zh")
UDPOS_LANGS = ("af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id", "it",
               "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur", "vi", "yo", "zh")
PANX_LANGS = ("af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id",
              "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl", "pt", "ru", "sw", "ta", "te", "th",
              "tl", "tr", "ur", "vi", "yo", "zh")
XQUAD_BENCHMARK = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
XQUAD_LANGS = XQUAD_BENCHMARK + ("ro",)  # Romanian: added to deepmind/xquad after XTREME
MLQA_BASE = ("ar", "de", "en", "es", "hi", "vi", "zh")
MLQA_LANGS = MLQA_BASE + tuple(f"{c}.{q}" for c in MLQA_BASE for q in MLQA_BASE if c != q)  # + G-XLT pairs
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
            "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese"}
TYDIQA_NAMES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian", "ko": "korean",
                "ru": "russian", "sw": "swahili", "te": "telugu"}


def _qa_test(task: str, *files: str) -> list:
    """A QA test split's candidates: XTREME's label file (a complete SQuAD file: XTREME blanks the answers of
    the test files it ships), then the given files."""
    return [(f"labels/{task}/test-{{lang}}.json", r.read_squad_json)] + [(f, r.read_squad_json) for f in files]


_task("xnli", C, ACC, "XNLI (zero-shot from English MNLI)", Sources(
    local=Local({DEV: [("target/xnli/dev-{lang}.tsv", _pairs_tsv)],
                 TEST: _xtreme_test("target/xnli/test-{lang}.tsv", "xnli", _pairs_tsv, r.read_pairs_with_labels)}),
    hub=Hub("facebook/xnli", "{lang}", {DEV: "validation", TEST: "test"}, _pairs("premise", "hypothesis", NLI))),
    languages=XNLI_LANGS, labels=NLI, train_from="mnli")
_task("pawsx", C, ACC, "PAWS-X paraphrase identification", Sources(
    local=Local({TRAIN: [("target/pawsx/train-{lang}.tsv", _pairs_tsv)], DEV: [("target/pawsx/dev-{lang}.tsv", _pairs_tsv)],
                 TEST: _xtreme_test("target/pawsx/test-{lang}.tsv", "pawsx", _pairs_tsv, r.read_pairs_with_labels)}),
    hub=Hub("google-research-datasets/paws-x", "{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"},
            _pairs("sentence1", "sentence2"))), languages=PAWSX_LANGS, labels=BINARY)
_task("udpos", T, Metric.TOKEN_ACCURACY, "Universal Dependencies POS tagging (XTREME, UD v2.5+)", Sources(
    local=Local({s: (_xtreme_test(f"target/udpos/{f}-{{lang}}.tsv", "udpos", r.read_tagging_tsv,
                                  r.read_tagging_with_labels) if s is TEST else
                     [(f"target/udpos/{f}-{{lang}}.tsv", r.read_tagging_tsv)])
                 + [(f"target/udpos_conllu/{{lang}}_gsd/{{lang}}_gsd-ud-{f}.conllu", r.read_conllu)]
                 for s, f in ((TRAIN, "train"), (DEV, "dev"), (TEST, "test"))}),
    hub=Hub("google/xtreme", "udpos.{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"}, _tagging("pos_tags"),
            langs=UD_NAMES)), languages=UDPOS_LANGS, labels=UPOS)
_task("panx", T, Metric.SEQEVAL_F1, "PAN-X / WikiANN named entities (XTREME split)", Sources(
    local=Local({TRAIN: [("target/panx/train-{lang}.tsv", r.read_tagging_tsv)],
                 DEV: [("target/panx/dev-{lang}.tsv", r.read_tagging_tsv)],
                 TEST: _xtreme_test("target/panx/test-{lang}.tsv", "panx", r.read_tagging_tsv,
                                    r.read_tagging_with_labels)}),
    hub=Hub("google/xtreme", "PAN-X.{lang}", {TRAIN: "train", DEV: "validation", TEST: "test"}, _tagging("ner_tags"))),
    languages=PANX_LANGS, labels=NER)
_task("xquad", Q, Metric.SQUAD, "XQuAD (zero-shot from English SQuAD v1.1)", Sources(
    local=Local({TEST: _qa_test("xquad", "target/xquad/xquad.{lang}.json")}),
    hub=Hub("google/xquad", "xquad.{lang}", {TEST: "validation"}, _squad)),
    languages=XQUAD_LANGS, benchmark_languages=XQUAD_BENCHMARK, train_from="squad", dev_from="squad")
# MLQA has its own dev set in every language, English included: only its training data is SQuAD's
_task("mlqa", Q, Metric.SQUAD, "MLQA: languages 'xx' or context.question pairs 'xx.yy'", Sources(
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
_task("tydiqa", Q, Metric.SQUAD, "TyDiQA-GoldP (XTREME evaluates on its dev set)", Sources(
    local=Local({TRAIN: [("target/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.{lang}.train.json", r.read_squad_json)],
                 DEV: _TYDIQA_DEV, TEST: _TYDIQA_DEV}, names=TYDIQA_NAMES),
    hub=Hub("google-research-datasets/tydiqa", "secondary_task", {TRAIN: "train", DEV: "validation",
                                                                  TEST: "validation"}, _tydiqa)),
    languages=TYDIQA_LANGS)
_task("bucc", R, Metric.BUCC_F1, "BUCC 2018 parallel sentence mining (xx-en, ratio margin)", Sources(
    local=Local({DEV: [("target/bucc2018/{lang}-en.dev.gold", _bucc)],
                 TEST: [("target/bucc2018/{lang}-en.test.gold", _bucc),
                        # XTREME removes the test gold: labels/bucc2018/test-LANG.tsv holds it
                        Together(("target/bucc2018/{lang}-en.test.{lang}", "target/bucc2018/{lang}-en.test.en",
                                  "labels/bucc2018/test-{lang}.tsv"), _bucc_files)]})),
    languages=BUCC_LANGS)
_task("tatoeba", R, Metric.RETRIEVAL_ACCURACY, "Tatoeba sentence retrieval (xx -> en, LASER v1 test sets)", Sources(
    local=Local({DEV: [("target/tatoeba/tatoeba.{lang3}-eng.{lang3}", _tatoeba)],
                 TEST: [("target/tatoeba/tatoeba.{lang3}-eng.{lang3}", _tatoeba),
                        # XTREME's copy: LANG-en.LANG, LANG-en.en sorted, the alignment in labels/tatoeba/
                        Together(("target/tatoeba/{lang}-en.{lang}", "target/tatoeba/{lang}-en.en",
                                  "labels/tatoeba/test-{lang}.tsv"), _tatoeba_with_labels)]}),
    hub=Hub("google/xtreme", "tatoeba.{lang3}", {DEV: "validation", TEST: "validation"}, _tatoeba_hub)),
    languages=TATOEBA_LANGS)
_task("xcopa", M, ACC, "XCOPA causal commonsense (zero-shot from English COPA)", Sources(
    local=Local({s: [(f"target/xcopa/{f}.{{lang}}.jsonl", _jsonl(r.JsonlShape.COPA, 2)),  # XTREME's layout
                     # cambridgeltl/xcopa as cloned: data/LANG/val.LANG.jsonl, data/LANG/test.LANG.jsonl
                     (f"target/xcopa/data/{{lang}}/{f}.{{lang}}.jsonl", _jsonl(r.JsonlShape.COPA, 2))]
                 for s, f in ((DEV, "val"), (TEST, "test"))}),
    hub=Hub("cambridgeltl/xcopa", "{lang}", {DEV: "validation", TEST: "test"}, _rows(r.JsonlShape.COPA, 2))),
    languages=XCOPA_LANGS, num_choices=2, train_from="copa", dev_from="copa")
