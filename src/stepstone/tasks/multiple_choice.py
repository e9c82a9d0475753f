"""Multiple-choice tasks (pick one of N options): HellaSwag, Cosmos QA, CommonsenseQA, Social IQa, COPA
(intermediate) and the XTREME-R target XCOPA, with their datasets' converters (JSONL row shapes, the Cosmos QA
CSV, hub rows). Convention: `context` = the passage followed by the question (joined by one space),
`choices` = the answers alone, `label` = index of the right answer. Layouts as in `tasks.classification`'s
docstring."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..data import readers as r
from ..errors import StepstoneError
from ..metrics import Metric
from . import rows
from .base import Split, TaskFormat, define
from .rows import JsonlShape, RowError, hub_rows, jsonl_reader
from .sources import Hub, Local, Sources

TRAIN, DEV, TEST = Split.TRAIN, Split.VALIDATION, Split.TEST
M, ACC = TaskFormat.MULTIPLE_CHOICE, Metric.ACCURACY
# XTREME-R's (scripts/download_data.sh, download_xcopa)
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")


# ------------------------------------------------------------------------------- JSONL row shapes
@rows.row_shape(JsonlShape.HELLASWAG, label_key="label")
def _hellaswag(row: dict, n: int | None = None) -> dict:
    """HellaSwag (rowanz/hellaswag): ctx, endings[], label (int or digit string)."""
    endings = rows.get(row, "endings")
    if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) for e in endings):
        raise RowError("'endings' must be a list of at least 2 strings")
    example = {"context": rows.text(row, "ctx"), "choices": list(endings),
               "label": rows.index(rows.get(row, "label"), len(endings))}
    rows.count(len(endings), n, "endings")
    return example


@rows.row_shape(JsonlShape.COMMONSENSEQA, label_key="answerKey")
def _commonsenseqa(row: dict, n: int | None = None) -> dict:
    """CommonsenseQA: the hub's flat rows (tau/commonsense_qa: question, choices{label[], text[]}, answerKey) or
    the original release's (train_rand_split.jsonl: question{stem, choices[{label, text}]}, answerKey)."""
    question = rows.get(row, "question")
    if isinstance(question, dict) and isinstance(question.get("choices"), list):  # the original release
        listed = question["choices"]
        if not all(isinstance(c, dict) and "label" in c and "text" in c for c in listed):
            raise RowError("'question.choices' must be a list of {'label', 'text'}")
        options = {"label": [c["label"] for c in listed], "text": [c["text"] for c in listed]}
        row = {**row, "question": rows.text(question, "stem")}
    else:
        options = rows.get(row, "choices")
    if (not isinstance(options, dict) or not isinstance(options.get("label"), list)
            or not isinstance(options.get("text"), list) or len(options["label"]) != len(options["text"])):
        raise RowError("'choices' must be {'label': [...], 'text': [...]} of equal length")
    label = rows.letter(rows.get(row, "answerKey"), options["label"], "answerKey")
    example = {"context": rows.text(row, "question"), "choices": list(options["text"]), "label": label}
    rows.count(len(options["text"]), n, "choices")
    return example


@rows.row_shape(JsonlShape.SIQA, label_key="correct")
def _siqa(row: dict, n: int | None = None) -> dict:
    """Social IQa (allenai socialiqa v1.4 jsonl): context, question, answerA-C, correct A/B/C."""
    example = {"context": rows.join(rows.text(row, "context"), rows.text(row, "question")),
               "choices": [rows.text(row, f"answer{x}") for x in "ABC"],
               "label": rows.letter(rows.get(row, "correct"), ["A", "B", "C"], "correct")}
    rows.count(rows.numbered(row, r"answer[A-Z]"), n, "answers")  # e.g. an answerD the task would silently drop
    return example


@rows.row_shape(JsonlShape.COPA, label_key="label")
def _copa(row: dict, n: int | None = None) -> dict:
    """COPA (SuperGLUE jsonl): premise, choice1, choice2, question cause/effect, label 0/1.
    context = "PREMISE What was the cause?" (or "... effect?")."""
    question = rows.get(row, "question")
    if question not in ("cause", "effect"):
        raise RowError(f"question '{question}' is not one of cause, effect")
    example = {"context": f"{rows.text(row, 'premise')} What was the {question}?",
               "choices": [rows.text(row, "choice1"), rows.text(row, "choice2")],
               "label": rows.index(rows.get(row, "label"), 2)}
    rows.count(rows.numbered(row, r"choice\d+"), n, "choices")  # e.g. a choice3 the task would silently drop
    return example


# ------------------------------------------------------------------------------- Cosmos QA CSV
_COSMOS_COLUMNS = ("id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label")


def read_cosmosqa_csv(path: Path) -> list[dict]:
    """Cosmos QA CSV (wilburOne/cosmosqa): header `id,context,question,answer0..answer3,label`, RFC 4180
    quoting. Multiple choice: context = context + " " + question, 4 choices, label 0-3."""
    records = r.read_csv_rows(path)
    _, header = next(records)
    missing = [c for c in _COSMOS_COLUMNS if c not in header]
    if missing:
        raise StepstoneError(f"{path}:1: missing column(s) {', '.join(missing)} (found: {', '.join(header)})")
    answers = sum(1 for c in header if re.fullmatch(r"answer\d+", c))
    if answers != 4:  # e.g. an extra answer4 column: the task has 4 options, collation needs exactly that
        raise StepstoneError(f"{path}:1: expected 4 answers, found {answers}")
    at = {c: header.index(c) for c in _COSMOS_COLUMNS}
    examples = []
    for number, fields in records:
        try:
            label = rows.index(fields[at["label"]], 4)
        except RowError as err:
            raise StepstoneError(f"{path}:{number}: {err}") from None
        examples.append({"context": rows.join(fields[at["context"]], fields[at["question"]]),
                         "choices": [fields[at[f"answer{i}"]] for i in range(4)], "label": label})
    return examples


# ------------------------------------------------------------------------------- hub rows
def _cosmos_hub(ds: Any, lang: str) -> list[dict]:
    return [{"context": f"{row['context']} {row['question']}", "choices": [row[f"answer{i}"] for i in range(4)],
             "label": int(row["label"])} for row in ds]


def _siqa_hub(ds: Any, lang: str) -> list[dict]:
    return [{"context": f"{row['context']} {row['question']}", "choices": [row["answerA"], row["answerB"], row["answerC"]],
             "label": int(row["label"]) - 1} for row in ds]


# ------------------------------------------------------------------------------- intermediate tasks
define("hellaswag", M, ACC, "HellaSwag", Sources(  # rowanz/hellaswag data/: hellaswag_train.jsonl, hellaswag_val.jsonl
    local=Local({s: [(f"intermediate/hellaswag/{f}.jsonl", jsonl_reader(JsonlShape.HELLASWAG, 4)),
                     (f"intermediate/hellaswag/hellaswag_{f}.jsonl", jsonl_reader(JsonlShape.HELLASWAG, 4))]
                 for s, f in ((TRAIN, "train"), (DEV, "val"))}),
    hub=Hub("Rowan/hellaswag", None, {TRAIN: "train", DEV: "validation"}, hub_rows(JsonlShape.HELLASWAG, 4))),
    num_choices=4)
define("cosmosqa", M, ACC, "Cosmos QA", Sources(
    local=Local({TRAIN: [("intermediate/cosmosqa/train.csv", read_cosmosqa_csv)],
                 DEV: [("intermediate/cosmosqa/valid.csv", read_cosmosqa_csv)]}),
    hub=Hub("allenai/cosmos_qa", None, {TRAIN: "train", DEV: "validation"}, _cosmos_hub)), num_choices=4)
define("commonsenseqa", M, ACC, "CommonsenseQA", Sources(
    local=Local({s: [(f"intermediate/commonsenseqa/{f}.jsonl", jsonl_reader(JsonlShape.COMMONSENSEQA, 5)),
                     # the original release (tau-nlp.github.io/commonsenseqa): train_rand_split.jsonl, ...
                     (f"intermediate/commonsenseqa/{f}_rand_split.jsonl", jsonl_reader(JsonlShape.COMMONSENSEQA, 5))]
                 for s, f in ((TRAIN, "train"), (DEV, "dev"))}),
    hub=Hub("tau/commonsense_qa", None, {TRAIN: "train", DEV: "validation"}, hub_rows(JsonlShape.COMMONSENSEQA, 5))),
    num_choices=5)
define("siqa", M, ACC, "Social IQa", Sources(
    local=Local({TRAIN: [("intermediate/siqa/socialIQa_v1.4_trn.jsonl", jsonl_reader(JsonlShape.SIQA, 3))],
                 DEV: [("intermediate/siqa/socialIQa_v1.4_dev.jsonl", jsonl_reader(JsonlShape.SIQA, 3))],
                 TEST: [("intermediate/siqa/socialIQa_v1.4_tst.jsonl", jsonl_reader(JsonlShape.SIQA, 3))]}),
    hub=Hub("allenai/social_i_qa", None, {TRAIN: "train", DEV: "validation"}, _siqa_hub)), num_choices=3)
define("copa", M, ACC, "Choice of Plausible Alternatives (English)", Sources(
    local=Local({s: [(f"intermediate/copa_en/{f}-en.jsonl", jsonl_reader(JsonlShape.COPA, 2)),
                     (f"intermediate/COPA/{f}.jsonl", jsonl_reader(JsonlShape.COPA, 2)),  # SuperGLUE's COPA.zip
                     (f"target/xcopa/{f}.en.jsonl", jsonl_reader(JsonlShape.COPA, 2))]  # XTREME's download_xcopa
                 for s, f in ((TRAIN, "train"), (DEV, "val"), (TEST, "test"))}),
    hub=Hub("aps/super_glue", "copa", {TRAIN: "train", DEV: "validation"}, hub_rows(JsonlShape.COPA, 2))),
    num_choices=2)

# ------------------------------------------------------------------------------- XTREME-R target
define("xcopa", M, ACC, "XCOPA causal commonsense (zero-shot from English COPA)", Sources(
    local=Local({s: [(f"target/xcopa/{f}.{{lang}}.jsonl", jsonl_reader(JsonlShape.COPA, 2)),  # XTREME's layout
                     # cambridgeltl/xcopa as cloned: data/LANG/val.LANG.jsonl, data/LANG/test.LANG.jsonl
                     (f"target/xcopa/data/{{lang}}/{f}.{{lang}}.jsonl", jsonl_reader(JsonlShape.COPA, 2))]
                 for s, f in ((DEV, "val"), (TEST, "test"))}),
    hub=Hub("cambridgeltl/xcopa", "{lang}", {DEV: "validation", TEST: "test"}, hub_rows(JsonlShape.COPA, 2))),
    languages=XCOPA_LANGS, num_choices=2, train_from="copa", dev_from="copa")
