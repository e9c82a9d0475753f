"""Readers on small fixtures written per test: exact outputs, and exact `path:line` messages for bad input."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stepstone.data.readers import (
    BuccData, read_bucc, read_conllu, read_jsonl, read_pairs_tsv, read_single_tsv, read_squad_json, read_tagging_tsv,
    read_tatoeba,
)
from stepstone.errors import StepstoneError
from stepstone.tasks.multiple_choice import read_cosmosqa_csv
from stepstone.tasks.rows import JsonlShape, convert_rows, read_task_jsonl


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def conllu_line(i: str, form: str, upos: str, xpos: str = "_") -> str:
    return "\t".join([i, form, "_", upos, xpos, "_", "_", "_", "_", "_"])


CONLLU = "\n".join([
    "# sent_id = s1", "# text = Im Haus.",
    "1-2\tIm\t_\t_\t_\t_\t_\t_\t_\t_",
    conllu_line("1", "In", "ADP", "APPR"), conllu_line("2", "dem", "DET", "ART"),
    conllu_line("3", "Haus", "NOUN", "NN"),
    "3.1\tist\t_\tAUX\t_\t_\t_\t_\t_\t_",
    conllu_line("4", ".", "PUNCT", "$."),
    "", "", "# sent_id = s2",
    conllu_line("1", "Ja", "INTJ", "ITJ"),
]) + "\n"


def test_read_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    path = write(tmp_path, "x.conllu", CONLLU)
    assert read_conllu(path) == [
        {"tokens": ["In", "dem", "Haus", "."], "tags": ["ADP", "DET", "NOUN", "PUNCT"]},
        {"tokens": ["Ja"], "tags": ["INTJ"]},
    ]
    assert read_conllu(path, column="xpos")[0]["tags"] == ["APPR", "ART", "NN", "$."]


def test_read_conllu_unknown_column(tmp_path):
    with pytest.raises(StepstoneError, match=r"unknown CoNLL-U column 'pos' \(valid: deprel, deps, feats, "):
        read_conllu(write(tmp_path, "x.conllu", CONLLU), column="pos")


def test_labelled_readers_know_the_line_of_every_example(tmp_path):
    """`Examples.where` is how a label outside a task's set, found after reading, names its file and line."""
    conllu = read_conllu(write(tmp_path, "x.conllu", CONLLU))
    assert conllu.lines == [(4, 5, 6, 8), (12,)]
    assert conllu.where(0, 3) == f"{tmp_path / 'x.conllu'}:8" and conllu.where(1) == f"{tmp_path / 'x.conllu'}:12"
    tagged = read_tagging_tsv(write(tmp_path, "t.tsv", "\na\tO\nb\tO\n\n\nc\tO"))
    assert tagged.lines == [(2, 3), (6,)]
    pairs = read_pairs_tsv(write(tmp_path, "p.tsv", "s1\ts2\tlabel\n\na\tb\t1\nc\td\t0\n"), header=True)
    assert pairs.lines == [3, 4] and pairs.where(1) == f"{tmp_path / 'p.tsv'}:4"
    assert read_single_tsv(write(tmp_path, "s.tsv", "sentence\tlabel\nx\t1\n")).lines == [2]


def test_read_tagging_tsv(tmp_path):
    path = write(tmp_path, "t.tsv", "R.H.\tB-ORG\r\nSaunders\tI-ORG\r\n\r\n\r\nbar:7\tO\r\n")
    assert read_tagging_tsv(path) == [
        {"tokens": ["R.H.", "Saunders"], "tags": ["B-ORG", "I-ORG"]},
        {"tokens": ["bar:7"], "tags": ["O"]},
    ]


def test_read_tagging_tsv_strips_a_given_language_prefix(tmp_path):
    path = write(tmp_path, "t.tsv", "en:Paris\tB-LOC\nen:bar:7\tO\n\nen:x\tO")
    assert read_tagging_tsv(path, lang_prefix="en") == [
        {"tokens": ["Paris", "bar:7"], "tags": ["B-LOC", "O"]}, {"tokens": ["x"], "tags": ["O"]},
    ]
    with pytest.raises(StepstoneError, match=r"t\.tsv:1: token 'en:Paris' does not start with 'de:'$"):
        read_tagging_tsv(path, lang_prefix="de")


def test_read_pairs_tsv(tmp_path):
    path = write(tmp_path, "x.tsv", "A man, \"quoted\".\tHe is.\tentailment\r\nB\tC\tneutral\r\n")
    assert read_pairs_tsv(path, header=False) == [
        {"text": "A man, \"quoted\".", "text_pair": "He is.", "label": "entailment"},
        {"text": "B", "text_pair": "C", "label": "neutral"},
    ]
    path = write(tmp_path, "p.tsv", "id\tlabel\ts1\ts2\n7\t1\tone\ttwo\n")
    assert read_pairs_tsv(path, header=True, columns=(2, 3, 1)) == [{"text": "one", "text_pair": "two", "label": "1"}]


def test_read_single_tsv(tmp_path):
    path = write(tmp_path, "sst.tsv", "sentence\tlabel\nkids , spirit \t1\n\nbad\t0\n\n")
    assert read_single_tsv(path) == [{"text": "kids , spirit ", "label": "1"}, {"text": "bad", "label": "0"}]
    assert read_single_tsv(write(tmp_path, "n.tsv", "x\t1\n"), header=False) == [{"text": "x", "label": "1"}]


def squad(*qas: dict, context: str = "Paris is in France.") -> str:
    paragraph = {"context": context, "qas": list(qas)}
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [paragraph]}]})


def test_read_squad_json(tmp_path):
    path = write(tmp_path, "q.json", squad(
        {"id": "a", "question": "Where?", "answers": [{"text": "France", "answer_start": 12},
                                                     {"text": "France.", "answer_start": 12}]},
        {"id": "b", "question": "What?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Paris", "answer_start": 0}]},
    ))
    assert read_squad_json(path) == [
        {"id": "a", "context": "Paris is in France.", "question": "Where?",
         "answers": {"text": ["France", "France."], "answer_start": [12, 12]}},
        {"id": "b", "context": "Paris is in France.", "question": "What?", "answers": {"text": [], "answer_start": []}},
    ]


def test_read_squad_json_makes_repeated_ids_unique(tmp_path):
    qa = {"id": "0", "question": "Q", "answers": [{"text": "Paris", "answer_start": 0}]}
    path = write(tmp_path, "q.json", squad(qa, qa, {**qa, "id": "0-2"}, qa))
    assert [e["id"] for e in read_squad_json(path)] == ["0", "0-2", "0-2-2", "0-3"]


def test_read_squad_json_blank_answers(tmp_path):
    blank = {"id": "x-1", "question": "Q", "answers": [{"text": "", "answer_start": 0}]}
    path = write(tmp_path, "q.json", squad(blank))
    with pytest.raises(StepstoneError, match=r"q\.json: question 'x-1': answer with empty text"):
        read_squad_json(path)
    assert read_squad_json(path, allow_blank_answers=True)[0]["answers"] == {"text": [], "answer_start": []}


def test_read_jsonl(tmp_path):
    path = write(tmp_path, "x.jsonl", '{"a": 1}\n\n{"b": [2]}\n')
    assert read_jsonl(path) == [{"a": 1}, {"b": [2]}]


TASK_ROWS = {
    JsonlShape.ANLI: ({"uid": "u", "context": "C.", "hypothesis": "H.", "label": "c", "reason": "r"},
                      {"text": "C.", "text_pair": "H.", "label": "contradiction"}),
    JsonlShape.HELLASWAG: ({"ctx": "A man", "endings": ["runs.", "sits."], "label": "1"},
                           {"context": "A man", "choices": ["runs.", "sits."], "label": 1}),
    JsonlShape.COMMONSENSEQA: ({"id": "i", "question": "Where?", "answerKey": "B",
                                "choices": {"label": ["A", "B", "C"], "text": ["bank", "mall", "home"]}},
                               {"context": "Where?", "choices": ["bank", "mall", "home"], "label": 1}),
    JsonlShape.SIQA: ({"context": "Tracy left.", "question": "Why?", "answerA": "a", "answerB": "b", "answerC": "c",
                       "correct": "C"},
                      {"context": "Tracy left. Why?", "choices": ["a", "b", "c"], "label": 2}),
    JsonlShape.COPA: ({"premise": "I fell.", "choice1": "Ice.", "choice2": "Sun.", "question": "cause", "label": 0},
                      {"context": "I fell. What was the cause?", "choices": ["Ice.", "Sun."], "label": 0}),
}


@pytest.mark.parametrize("shape", list(JsonlShape))
def test_read_task_jsonl(tmp_path, shape):
    row, expected = TASK_ROWS[shape]
    path = write(tmp_path, "t.jsonl", json.dumps(row) + "\n" + json.dumps(row) + "\n")
    assert read_task_jsonl(path, shape) == [expected, expected]
    assert read_task_jsonl(path, shape.value) == [expected, expected]
    assert convert_rows([row], shape, "hub:x") == [expected]


def test_copa_effect_and_anli_full_label_names():
    copa = {"premise": "P.", "choice1": "a", "choice2": "b", "question": "effect", "label": 1}
    assert convert_rows([copa], "copa", "s")[0]["context"] == "P. What was the effect?"
    anli = {"context": "c", "hypothesis": "h", "label": "neutral"}
    assert convert_rows([anli], "anli", "s")[0]["label"] == "neutral"


def test_unknown_shape():
    with pytest.raises(StepstoneError, match=r"unknown row shape 'mnli' \(valid: anli, commonsenseqa, copa, "):
        convert_rows([], "mnli", "s")


def test_read_cosmosqa_csv(tmp_path):
    content = ('id,context,question,answer0,answer1,answer2,answer3,label\r\n'
               'q1,"Hi, there\r\nline two",Why ?,a,"b, c",d,e,3\r\n'
               'q2,Ctx,Q,a,b,c,d,0')
    path = write(tmp_path, "c.csv", content)
    assert read_cosmosqa_csv(path) == [
        {"context": "Hi, there\r\nline two Why ?", "choices": ["a", "b, c", "d", "e"], "label": 3},
        {"context": "Ctx Q", "choices": ["a", "b", "c", "d"], "label": 0},
    ]
    bad = write(tmp_path, "b.csv", content.replace("e,3", "e,4"))
    with pytest.raises(StepstoneError, match=r"b\.csv:2: label '4' is not one of 0, 1, 2, 3$"):
        read_cosmosqa_csv(bad)


def test_read_tatoeba(tmp_path):
    src = write(tmp_path, "t.deu", "Hallo.\nWo?\n")
    eng = write(tmp_path, "t.eng", "Hello.\r\nWhere?")
    assert read_tatoeba(src, eng) == [("Hallo.", "Hello."), ("Wo?", "Where?")]


def test_read_bucc(tmp_path):
    zh = write(tmp_path, "b.zh", "zh-1\t你好\nzh-2\t再见\n")
    en = write(tmp_path, "b.en", "en-1\tHello\nen-2\tBye\nen-3\tSo\n")
    gold = write(tmp_path, "b.gold", "zh-2\ten-2\n\n")
    assert read_bucc(zh, en, gold) == BuccData({"zh-1": "你好", "zh-2": "再见"},
                                              {"en-1": "Hello", "en-2": "Bye", "en-3": "So"}, [("zh-2", "en-2")])


# --------------------------------------------------------------------------------------------- bad input
def _bucc(path: Path) -> BuccData:
    other = path.with_name("other.tsv")
    other.write_text("en-1\tHello\n", encoding="utf-8")
    return read_bucc(path, other, path.with_name("gold.tsv"))


READERS = {
    "conllu": read_conllu,
    "tagging_tsv": read_tagging_tsv,
    "pairs_tsv": lambda p: read_pairs_tsv(p, header=False),
    "single_tsv": read_single_tsv,
    "squad": read_squad_json,
    "jsonl": read_jsonl,
    "task_jsonl": lambda p: read_task_jsonl(p, JsonlShape.ANLI),
    "cosmosqa": read_cosmosqa_csv,
    "tatoeba": lambda p: read_tatoeba(p, p),
    "bucc": _bucc,
}


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_rejects_missing_empty_and_non_utf8_files(tmp_path, reader):
    read = READERS[reader]
    missing = tmp_path / "missing.txt"
    with pytest.raises(StepstoneError, match=f"^{re.escape(str(missing))}: file not found$"):
        read(missing)
    for content in (b"", b"\n \n"):
        with pytest.raises(StepstoneError, match=f"^{re.escape(str(tmp_path / 'empty.txt'))}: empty file$"):
            read(write(tmp_path, "empty.txt", content))
    with pytest.raises(StepstoneError, match=f"^{re.escape(str(tmp_path / 'latin1.txt'))}:3: not valid UTF-8$"):
        read(write(tmp_path, "latin1.txt", b"a\tb\tc\nd\te\tf\ncaf\xe9\tx\ty\n"))


SQUAD_SHIFTED = squad({"id": "q7", "question": "Q", "answers": [{"text": "France", "answer_start": 11}]})

BAD = [  # (reader, file content, expected message after "PATH")
    ("conllu", CONLLU.replace(conllu_line("3", "Haus", "NOUN", "NN"), "3\tHaus\tNOUN"),
     ":6: expected 10 tab-separated columns, found 3"),
    ("conllu", CONLLU.replace("3.1\t", "x\t"), ":7: bad word ID 'x' (expected N, N-M or N.M)"),
    ("conllu", CONLLU.replace("1-2\t", "2-1\t"), ":3: bad multiword token range '2-1' (expected N-M with N < M)"),
    ("conllu", CONLLU.replace("1-2\t", "1-1\t"), ":3: bad multiword token range '1-1' (expected N-M with N < M)"),
    ("tagging_tsv", "a\tO\nb\tO\tX\n", ":2: expected 2 tab-separated columns, found 3"),
    ("tagging_tsv", "a\tO\n\nb\n", ":3: expected 2 tab-separated columns, found 1"),
    ("tagging_tsv", "a\t\n", ":1: empty tag"),
    ("pairs_tsv", "a\tb\tneutral\na\tb\n", ":2: expected 3 tab-separated columns, found 2"),
    ("pairs_tsv", "a\tb\n", ":1: expected at least 3 tab-separated columns, found 2"),
    ("pairs_tsv", "a\tb\t\n", ":1: empty label"),
    ("single_tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", ":3: expected 2 tab-separated columns, found 3"),
    ("squad", SQUAD_SHIFTED, ": question 'q7': answer 'France' is not at offset 11 of its context"),
    ("squad", '{"data": [\n{"paragraphs": [}\n]}', ":2: invalid JSON: Expecting value"),
    ("squad", '{"version": "1.1"}', ": not a SQuAD file (expected an object with a 'data' list)"),
    ("squad", squad({"question": "Q", "answers": []}), ": article 0, paragraph 0: missing 'id'"),
    ("jsonl", '{"a": 1}\n{"a": 2,}\n', ":2: invalid JSON: Expecting property name enclosed in double quotes"),
    ("jsonl", '{"a": 1}\n[1, 2]\n', ":2: expected a JSON object, found list"),
    ("task_jsonl", '{"context": "c", "hypothesis": "h", "label": "e"}\n{"context": "c", "hypothesis": "h", '
                   '"label": "x"}\n', ":2: label 'x' is not one of c, e, n"),
    ("task_jsonl", '{"context": "c", "label": "e"}\n', ":1: missing key 'hypothesis'"),
    ("task_jsonl", '{"context": "c", "hypothesis": "h"}\n', ":1: missing key 'label'"),
    ("cosmosqa", "id,context,question,answer0,answer1,answer2,label\nq,c,q,a,b,c,0\n",
     ":1: missing column(s) answer3 (found: id, context, question, answer0, answer1, answer2, label)"),
    ("cosmosqa", "id,context,question,answer0,answer1,answer2,answer3,label\nq,c,q,a,b,c,d\n",
     ":2: expected 8 columns, found 7"),
    ("bucc", "en-1\tHi\nen-1\tHo\n", ":2: duplicate id 'en-1' (first on line 1)"),
    ("bucc", "en-1\tHi there\tfriend\n", ":1: expected 2 tab-separated columns, found 3"),
]


@pytest.mark.parametrize("reader, content, message", BAD, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BAD)])
def test_bad_input_names_path_and_line(tmp_path, reader, content, message):
    path = write(tmp_path, "bad.txt", content)
    with pytest.raises(StepstoneError) as err:
        READERS[reader](path)
    assert str(err.value) == f"{path}{message}"


SHAPE_ERRORS = [
    (JsonlShape.HELLASWAG, {"ctx": "c", "endings": ["a", "b"], "label": 2}, "label '2' is not one of 0, 1"),
    (JsonlShape.HELLASWAG, {"ctx": "c", "endings": "ab", "label": 0}, "'endings' must be a list of at least 2 strings"),
    (JsonlShape.COMMONSENSEQA,
     {"question": "q", "answerKey": "F", "choices": {"label": ["A", "B"], "text": ["a", "b"]}},
     "answerKey 'F' is not one of A, B"),
    (JsonlShape.SIQA, {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c", "correct": "D"},
     "correct 'D' is not one of A, B, C"),
    (JsonlShape.SIQA, {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "correct": "A"},
     "missing key 'answerC'"),
    (JsonlShape.COPA, {"premise": "p", "choice1": "a", "choice2": "b", "question": "why", "label": 0},
     "question 'why' is not one of cause, effect"),
    (JsonlShape.COPA, {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": True},
     "label 'True' is not one of 0, 1"),
    (JsonlShape.ANLI, {"context": 3, "hypothesis": "h", "label": "e"}, "'context' must be a string, found int"),
]


@pytest.mark.parametrize("shape, row, message", SHAPE_ERRORS)
def test_bad_rows_name_file_and_line(tmp_path, shape, row, message):
    good = TASK_ROWS[shape][0]
    path = write(tmp_path, "t.jsonl", json.dumps(good) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(StepstoneError) as err:
        read_task_jsonl(path, shape)
    assert str(err.value) == f"{path}:3: {message}"


def test_tatoeba_different_line_counts(tmp_path):
    src = write(tmp_path, "t.deu", "a\nb\nc\n")
    eng = write(tmp_path, "t.eng", "a\nb\n")
    with pytest.raises(StepstoneError) as err:
        read_tatoeba(src, eng)
    assert str(err.value) == f"{src} has 3 lines but {eng} has 2: not aligned"


def test_bucc_gold_id_not_found(tmp_path):
    zh = write(tmp_path, "b.zh", "zh-1\t你好\n")
    en = write(tmp_path, "b.en", "en-1\tHello\n")
    gold = write(tmp_path, "b.gold", "zh-1\ten-1\nzh-1\ten-9\n")
    with pytest.raises(StepstoneError) as err:
        read_bucc(zh, en, gold)
    assert str(err.value) == f"{gold}:2: id 'en-9' is not in {en}"


def test_utf8_bom_is_dropped(tmp_path):
    path = write(tmp_path, "bom.tsv", b"\xef\xbb\xbfsentence\tlabel\nok\t1\n")
    assert read_single_tsv(path) == [{"text": "ok", "label": "1"}]


def test_unicode_line_separators_do_not_split_lines(tmp_path):
    path = write(tmp_path, "u.tsv", "a\u2028b\x85c\tO\n")
    assert read_tagging_tsv(path) == [{"tokens": ["a\u2028b\x85c"], "tags": ["O"]}]
