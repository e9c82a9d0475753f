"""Readers of native file formats: tab-separated (XTREME tagging and sentence-pair files, GLUE TSV),
CoNLL-U, CCGbank AUTO, SQuAD JSON, JSON Lines, CSV, and the line files of Tatoeba and BUCC.

File formats only: a dataset's own row layout (ANLI's, HellaSwag's, Cosmos QA's columns, ...) is converted by
the task family that owns the dataset (`stepstone.tasks.<family>`, shared helpers in `stepstone.tasks.rows`).
This module imports nothing from `stepstone.tasks`.

Each reader takes a `Path` and returns canonical examples (see `tasks.base.TaskFormat`):
classification `{"text", ["text_pair"], "label": str}`, tagging `{"tokens", "tags"}`, QA (SQuAD v1.1)
`{"id", "context", "question", "answers": {"text", "answer_start"}}`; JSON Lines and CSV readers return
numbered rows; retrieval readers return aligned pairs or `BuccData`.

Every malformed input raises `StepstoneError` with one line `PATH[:LINE]: what is wrong`: a missing file
("PATH: file not found"), an empty file ("PATH: empty file"), bytes that are not UTF-8
("PATH:LINE: not valid UTF-8"), a wrong column count, a bad label, ... Text files may end lines with
LF or CRLF and may start with a UTF-8 BOM; fields are kept verbatim (no stripping of inner whitespace).
Readers of labelled lines (tagging, classification TSV; the task families' JSONL converters too) return
`Examples`: a list that also knows the line of every example, so that a label found to be outside a task's set
later is reported as `PATH:LINE`.
A file that carries no labels at all (XTREME removes them from its test files: a missing label column, tokens
without tags, every SQuAD answer blank) raises `Unlabelled`, a `StepstoneError` the task sources complete with
what to do (pair it with its labels file, or train without dev). XTREME's separate label files pair with
their inputs through the `read_*_with_labels` readers.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .. import provenance
from ..errors import StepstoneError, choices

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


class Unlabelled(StepstoneError):
    """The file has no labels (or gold answers) at all, e.g. one of XTREME's unlabelled test files."""


class Examples(list):
    """A reader's examples (a plain list to everything that uses them) plus where each came from:
    `lines[i]` is the line of example i, or for tagging a tuple with the line of each token."""

    def __init__(self, path: Path, examples: Iterable[dict] = (), lines: Iterable[int | tuple[int, ...]] = ()):
        super().__init__(examples)
        self.path = Path(path)
        self.lines = list(lines)

    def where(self, index: int, token: int = 0) -> str:
        """`PATH:LINE` of example `index` (of its token `token` for tagging)."""
        line = self.lines[index]
        return f"{self.path}:{line[token] if isinstance(line, tuple) else line}"


# ---------------------------------------------------------------------------------------------- files
def _read_text(path: Path) -> str:
    """The whole file as text: checked to exist, be non-empty and be UTF-8 (a leading BOM is dropped)."""
    path = Path(path)
    if not path.exists():
        raise StepstoneError(f"{path}: file not found")
    if not path.is_file():
        raise StepstoneError(f"{path}: not a file")
    data = path.read_bytes()
    provenance.read_file(path, data)  # manifests record what each run read (a no-op otherwise)
    if not data.strip():
        raise StepstoneError(f"{path}: empty file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise StepstoneError(f"{path}:{line}: not valid UTF-8") from None


def _lines(path: Path) -> list[str]:
    """The file's lines without terminators. Splits on LF only: str.splitlines would also split on
    characters like U+2028 or U+0085 that can occur inside a sentence."""
    lines = _read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _columns(path: Path, number: int, line: str, expected: int) -> list[str]:
    fields = line.split("\t")
    if len(fields) != expected:
        raise StepstoneError(f"{path}:{number}: expected {expected} tab-separated columns, found {len(fields)}")
    return fields


def _unless_unlabelled(read: Callable[[], Examples], unlabelled: Callable[[], bool]) -> Examples:
    """`read()`, except that its error becomes `Unlabelled` (same message) when the file has no labels at
    all (`unlabelled()`): the first bad line is still named, and the sources can say what to do."""
    try:
        return read()
    except Unlabelled:
        raise
    except StepstoneError as err:
        try:
            bare = unlabelled()
        except StepstoneError:  # unreadable: the original error says why
            bare = False
        if bare:
            raise Unlabelled(str(err)) from None
        raise


# -------------------------------------------------------------------------------------------- tagging
def _sentences(path: Path, word: Callable[[int, str], tuple[str, str] | None]) -> Examples:
    """Blank-line separated sentences; `word` turns a line into (token, tag), or None to skip it."""
    sentences = Examples(path)
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(_lines(path) + [""], 1):  # the extra blank line ends the last sentence
        if not line.strip():
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
                sentences.lines.append(tuple(lines))
                tokens, tags, lines = [], [], []
        elif (pair := word(number, line)) is not None:
            tokens.append(pair[0])
            tags.append(pair[1])
            lines.append(number)
    return sentences


def read_conllu(path: Path, column: str = "upos") -> Examples:
    """CoNLL-U (Universal Dependencies, universaldependencies.org/format.html) as tagging examples.

    10 tab-separated columns per word line; `column` names the tag column (default UPOS). Comment lines
    (`#`), multiword-token ranges (`1-2`) and empty nodes (`1.1`) are skipped; a blank line ends a sentence.
    """
    if column not in CONLLU_COLUMNS[2:]:
        raise StepstoneError(f"unknown CoNLL-U column '{column}' (valid: {choices(CONLLU_COLUMNS[2:])})")
    index = CONLLU_COLUMNS.index(column)

    def word(number: int, line: str) -> tuple[str, str] | None:
        if line.startswith("#"):
            return None
        fields = _columns(path, number, line, 10)
        if fields[0].isdigit():
            return fields[1], fields[index]
        if re.fullmatch(r"\d+\.\d+", fields[0]):
            return None
        if (span := re.fullmatch(r"(\d+)-(\d+)", fields[0])) is not None:
            if int(span[1]) >= int(span[2]):
                raise StepstoneError(f"{path}:{number}: bad multiword token range '{fields[0]}' "
                                     "(expected N-M with N < M)")
            return None
        raise StepstoneError(f"{path}:{number}: bad word ID '{fields[0]}' (expected N, N-M or N.M)")

    return _sentences(path, word)


_CCG_LEAF = re.compile(r"\(<L (\S+) (\S+) (\S+) (\S+) (\S+)>\)")


def read_ccg_auto(path: Path) -> list[dict]:
    """CCGbank AUTO derivations (Hockenmaier & Steedman 2007) as supertagging examples.

    Each derivation is an `ID=...` header line followed by one tree line whose leaves read
    `(<L CATEGORY POS POS WORD PRED-ARG-CATEGORY>)`; the tokens are the words and the tags their lexical
    categories, in order. Works on one section file or on sections concatenated into one file."""
    examples, header = [], None
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        if line.startswith("ID="):
            if header is not None:
                raise StepstoneError(f"{path}:{header}: header without a derivation")
            header = number
            continue
        leaves = _CCG_LEAF.findall(line)
        if not leaves or not line.lstrip().startswith("("):
            raise StepstoneError(f"{path}:{number}: not a CCGbank AUTO derivation (expected (<L CAT POS POS WORD CAT>) leaves)")
        examples.append({"tokens": [leaf[3] for leaf in leaves], "tags": [leaf[0] for leaf in leaves]})
        header = None
    if header is not None:
        raise StepstoneError(f"{path}:{header}: header without a derivation")
    return examples


def read_tagging_tsv(path: Path, *, lang_prefix: str | None = None) -> Examples:
    """XTREME tagging files (UD-POS, PAN-X): `token\\tTAG` per line, a blank line between sentences.

    XTREME's raw PAN-X files write every token as `en:token`; pass `lang_prefix="en"` to require and strip
    that prefix (a token without it is an error). The default keeps tokens verbatim; this matters because
    real tokens can look like prefixes (the PAN-X en files here contain the token `bar:7`).
    """
    prefix = f"{lang_prefix}:" if lang_prefix else ""

    def word(number: int, line: str) -> tuple[str, str]:
        token, tag = _columns(path, number, line, 2)
        if not token.startswith(prefix):
            raise StepstoneError(f"{path}:{number}: token '{token}' does not start with '{prefix}'")
        token = token[len(prefix):]
        if not token or not tag:
            raise StepstoneError(f"{path}:{number}: empty {'token' if not token else 'tag'}")
        return token, tag

    def untagged() -> bool:  # XTREME's test files: one token per line, no tag column
        fields = [line.split("\t") for line in _lines(path) if line.strip()]
        return all(len(f) == 1 or (len(f) == 2 and not f[1].strip()) for f in fields)

    return _unless_unlabelled(lambda: _sentences(path, word), untagged)


def read_tagging_with_labels(inputs: Path, labels: Path) -> Examples:
    """XTREME's unlabelled tagging test files (UD-POS, PAN-X `test-LANG.tsv`: one token per line, a blank line
    between sentences) paired with their labels file (one tag per line, the same sentence breaks; XTREME's
    label-folder layout `labels/TASK/test-LANG.tsv`). Lines are the labels file's."""
    def token(number: int, line: str) -> tuple[str, str]:  # `token`, or `token<TAB>` (a blank tag column)
        fields = line.split("\t")
        return (fields[0] if len(fields) == 2 and not fields[1].strip() else _columns(inputs, number, line, 1)[0]), ""

    tokens = _sentences(inputs, token)  # every input `untagged` calls unlabelled
    tags = _sentences(labels, lambda n, line: ("", _columns(labels, n, line, 1)[0]))
    if len(tokens) != len(tags):
        raise StepstoneError(f"{labels} has {len(tags)} sentences but {inputs} has {len(tokens)}: not aligned")
    for k, (words, tagged) in enumerate(zip(tokens, tags)):
        if len(words["tokens"]) != len(tagged["tags"]):
            raise StepstoneError(f"{labels}:{tags.lines[k][0]}: sentence {k + 1} has {len(tagged['tags'])} tags but "
                                 f"{len(words['tokens'])} tokens in {inputs} (line {tokens.lines[k][0]})")
    return Examples(labels, ({"tokens": w["tokens"], "tags": t["tags"]} for w, t in zip(tokens, tags)), tags.lines)


# ------------------------------------------------------------------------------------- classification
def _tsv_rows(path: Path, header: bool, needed: int) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of a tab-separated file; every row has as many columns as the first line.
    Blank lines are skipped."""
    rows = [(number, line) for number, line in enumerate(_lines(path), 1) if line.strip()]
    width = len(rows[0][1].split("\t"))
    if width < needed:
        raise StepstoneError(f"{path}:{rows[0][0]}: expected at least {needed} tab-separated columns, found {width}")
    for number, line in rows[1:] if header else rows:
        yield number, _columns(path, number, line, width)


def _label(path: Path, number: int, value: str) -> str:
    if not value.strip():
        raise StepstoneError(f"{path}:{number}: empty label")
    return value


def read_pairs_tsv(path: Path, *, header: bool, columns: tuple[int, int, int] = (0, 1, 2)) -> Examples:
    """Sentence-pair classification TSV (XNLI `premise\\thypothesis\\tlabel`, PAWS-X `s1\\ts2\\tlabel`,
    both as in XTREME / google-research-datasets paws-x). `columns` gives the (text, text_pair, label)
    column indexes. No quoting: a field is everything between tabs."""
    a, b, c = columns

    def read() -> Examples:
        rows = list(_tsv_rows(path, header, max(columns) + 1))
        return Examples(path, ({"text": f[a], "text_pair": f[b], "label": _label(path, n, f[c])} for n, f in rows),
                        (n for n, _ in rows))
    return _unless_unlabelled(read, lambda: _no_label_column(path, header, (a, b), c))


def read_single_tsv(path: Path, *, header: bool = True, columns: tuple[int, int] = (0, 1)) -> Examples:
    """Single-sentence classification TSV, e.g. SST-2 (GLUE) `sentence\\tlabel` with a header line."""
    a, c = columns

    def read() -> Examples:
        rows = list(_tsv_rows(path, header, max(columns) + 1))
        return Examples(path, ({"text": f[a], "label": _label(path, n, f[c])} for n, f in rows),
                        (n for n, _ in rows))
    return _unless_unlabelled(read, lambda: _no_label_column(path, header, (a,), c))


def _no_label_column(path: Path, header: bool, text: tuple[int, ...], label: int) -> bool:
    """Every row has its text columns but no label (the column missing or blank): an unlabelled file."""
    rows = [line.split("\t") for line in _lines(path) if line.strip()][1 if header else 0:]
    return bool(rows) and all(len(f) > max(text) and (len(f) <= label or not f[label].strip()) for f in rows)


def read_pairs_with_labels(inputs: Path, labels: Path) -> Examples:
    """XTREME's unlabelled sentence-pair test files (XNLI, PAWS-X `test-LANG.tsv`: `s1\\ts2`, no header) paired
    with their labels file (one label per line; XTREME's label-folder layout `labels/TASK/test-LANG.tsv`).
    Lines are the labels file's, where a bad label is."""
    rows = list(_tsv_rows(inputs, False, 2))
    blank_label = len(rows[0][1]) == 3 and all(not f[2].strip() for _, f in rows)  # as `_no_label_column` has it
    if len(rows[0][1]) != 2 and not blank_label:
        raise StepstoneError(f"{inputs}:{rows[0][0]}: expected 2 tab-separated columns (no label), "
                             f"found {len(rows[0][1])}")
    gold = [(n, line.strip()) for n, line in enumerate(_lines(labels), 1) if line.strip()]
    if len(gold) != len(rows):
        raise StepstoneError(f"{labels} has {len(gold)} labels but {inputs} has {len(rows)} rows: not aligned")
    return Examples(labels, ({"text": f[0], "text_pair": f[1], "label": label} for (_, f), (_, label) in zip(rows, gold)),
                    (n for n, _ in gold))


# ------------------------------------------------------------------------------------------------- QA
def _json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise StepstoneError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None


def read_squad_json(path: Path, *, allow_blank_answers: bool = False) -> list[dict]:
    """SQuAD v1.1 / v2.0 JSON (`data[].paragraphs[].{context, qas[].{id, question, answers[]}}`);
    also XQuAD and TyDiQA-GoldP in XTREME's SQuAD form.

    v2.0 questions with `is_impossible: true` get empty answer lists. Every answer is checked to sit at
    its `answer_start` in the context. Ids must identify questions (predictions are keyed by id): a
    repeated id gets the suffix `-2`, `-3`, ... (first free one), as in the TyDiQA-GoldP train files here
    whose ids are per-paragraph counters. An answer with empty text is an error unless
    `allow_blank_answers`, which drops it (the question then has no gold answer).
    """
    doc = _json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise StepstoneError(f"{path}: not a SQuAD file (expected an object with a 'data' list)")
    examples: list[dict] = []
    seen: set[str] = set()
    for a, article in enumerate(doc["data"]):
        for p, paragraph in enumerate(_field(path, article, "paragraphs", list, f"article {a}")):
            where = f"article {a}, paragraph {p}"
            context = _field(path, paragraph, "context", str, where)
            for question in _field(path, paragraph, "qas", list, where):
                qid = str(_field(path, question, "id", (str, int), where))
                where_q = f"question '{qid}'"
                texts, starts = [], []
                if not question.get("is_impossible", False):
                    for answer in _field(path, question, "answers", list, where_q):
                        text = _field(path, answer, "text", str, where_q)
                        start = _field(path, answer, "answer_start", int, where_q)
                        if not text:
                            if allow_blank_answers:
                                continue
                            _blank_answer(path, doc, where_q)
                        if start < 0 or context[start:start + len(text)] != text:
                            raise StepstoneError(f"{path}: {where_q}: answer '{text}' is not at offset {start} "
                                                 f"of its context")
                        texts.append(text)
                        starts.append(start)
                unique, n = qid, 1
                while unique in seen:
                    n += 1
                    unique = f"{qid}-{n}"
                seen.add(unique)
                examples.append({"id": unique, "context": context,
                                 "question": _field(path, question, "question", str, where_q),
                                 "answers": {"text": texts, "answer_start": starts}})
    return examples


def _blank_answer(path: Path, doc: dict, where: str):
    """Raise for a blank answer: `Unlabelled` when every answer in the file is blank (XTREME's test files:
    each answer replaced by "" at 0), else the question's own error."""
    one = f"{path}: {where}: answer with empty text (no gold answer; allow_blank_answers=True reads it as unanswered)"
    try:
        questions = [q for article in doc["data"] for paragraph in article["paragraphs"] for q in paragraph["qas"]]
        bare = all(not q.get("is_impossible", False) and all(not a["text"] for a in q["answers"]) for q in questions)
    except (KeyError, TypeError, AttributeError):  # malformed further on: that question's own error comes later
        bare = False
    if not bare:
        raise StepstoneError(one)
    if len(questions) == 1:
        raise Unlabelled(one)
    raise Unlabelled(f"{path}: no gold answers: all {len(questions)} questions have an answer with empty text")


def _field(path: Path, obj, key: str, kind, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise StepstoneError(f"{path}: {where}: missing '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise StepstoneError(f"{path}: {where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


# ---------------------------------------------------------------------------------------------- JSONL
def read_jsonl_rows(path: Path) -> list[tuple[int, dict]]:
    """JSON Lines as (line number, object) pairs: one JSON object per line, blank lines skipped."""
    rows = []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise StepstoneError(f"{path}:{number}: invalid JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise StepstoneError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
        rows.append((number, row))
    return rows


def read_jsonl(path: Path) -> list[dict]:
    """JSON Lines: one JSON object per line (blank lines are skipped), returned as they are."""
    return [row for _, row in read_jsonl_rows(path)]


# ----------------------------------------------------------------------------------------------- CSV
def read_csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """CSV with a header line (RFC 4180 quoting): yields (1, header), then (line, fields) for every non-empty
    record, `line` being where the record starts; each record has as many fields as the header. Lazy, so
    that a caller's check of the header comes before an error further down the file."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader)
        yield 1, header
        line = reader.line_num
        for fields in reader:
            number, line = line + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                raise StepstoneError(f"{path}:{number}: expected {len(header)} columns, found {len(fields)}")
            yield number, fields
    except csv.Error as err:
        raise StepstoneError(f"{path}:{reader.line_num}: invalid CSV: {err}") from None


# ----------------------------------------------------------------------------------------- retrieval
def read_tatoeba(src_path: Path, eng_path: Path) -> list[tuple[str, str]]:
    """Tatoeba (LASER data/tatoeba/v1): `tatoeba.xxx-eng.xxx` and `.eng`, line i of one translates line i
    of the other. Returns (xxx, eng) pairs."""
    src, eng = _lines(src_path), _lines(eng_path)
    if len(src) != len(eng):
        raise StepstoneError(f"{src_path} has {len(src)} lines but {eng_path} has {len(eng)}: not aligned")
    return list(zip(src, eng))


def read_tatoeba_with_labels(src_path: Path, eng_path: Path, labels: Path) -> list[tuple[str, str]]:
    """XTREME's Tatoeba test files (`LANG-en.LANG`, and `LANG-en.en` sorted so that line order gives nothing
    away) with their labels file (`labels/tatoeba/test-LANG.tsv`: line i = the 0-based line of `LANG-en.en`
    that translates line i of `LANG-en.LANG`). Returns (xxx, eng) pairs, as `read_tatoeba`."""
    src, eng = _lines(src_path), _lines(eng_path)
    gold = [(n, line.strip()) for n, line in enumerate(_lines(labels), 1) if line.strip()]
    if len(gold) != len(src):
        raise StepstoneError(f"{labels} has {len(gold)} labels but {src_path} has {len(src)} lines: not aligned")
    pairs = []
    for (number, value), sentence in zip(gold, src):
        if not (value.isascii() and value.isdigit()) or int(value) >= len(eng):  # int('²') would raise
            raise StepstoneError(f"{labels}:{number}: '{value}' is not a line index of {eng_path} "
                                 f"(0-{len(eng) - 1})")
        pairs.append((sentence, eng[int(value)]))
    return pairs


@dataclass(frozen=True)
class BuccData:
    """BUCC 2018 bitext mining: sentences by id on both sides and the gold (source id, target id) pairs."""

    source: dict[str, str]
    target: dict[str, str]
    gold: list[tuple[str, str]]


def _id_sentences(path: Path) -> dict[str, str]:
    sentences: dict[str, str] = {}
    first: dict[str, int] = {}
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        key, sentence = _columns(path, number, line, 2)
        if key in sentences:
            raise StepstoneError(f"{path}:{number}: duplicate id '{key}' (first on line {first[key]})")
        sentences[key], first[key] = sentence, number
    return sentences


def read_bucc(source_path: Path, target_path: Path, gold_path: Path) -> BuccData:
    """BUCC 2018 (comparable.limsi.fr/bucc2018): `ID\\tsentence` per side (e.g. zh-en.dev.zh / .en) and a
    gold file `SOURCE-ID\\tTARGET-ID`; every gold id must exist on its side. Blank lines are skipped."""
    source, target = _id_sentences(source_path), _id_sentences(target_path)
    gold = []
    for number, line in enumerate(_lines(gold_path), 1):
        if not line.strip():
            continue
        src, tgt = _columns(gold_path, number, line, 2)
        for key, side, side_path in ((src, source, source_path), (tgt, target, target_path)):
            if key not in side:
                raise StepstoneError(f"{gold_path}:{number}: id '{key}' is not in {side_path}")
        gold.append((src, tgt))
    return BuccData(source, target, gold)
