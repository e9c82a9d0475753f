"""The bad-input catalogue: every reader and every CLI input a user can get wrong, end to end.

One table, one test. Each case writes its own small broken input under a fresh folder (data files laid
out as `--data-dir` expects, a YAML config, a zoo entry copied from one trained once per module and then
damaged), runs the real `stepstone` CLI there, and requires what README "Bad input" promises: exit code 2,
exactly one line on stderr, `error: ` + the expected message (it names the file, and the line where the
input has lines, what was wrong, and the valid choices where there are some), nothing on stdout, and
nothing written: every file and folder under the case's folder, hidden ones included, is byte-identical
before and after (no runs/, no evaluations/, no half-written `.NAME.tmp-*` folders, no zoo change).

Cases that would train use the tiny backbone and FAST settings, and fail before training starts.
Run with `-s` to print the catalogue (`CATALOGUE<TAB>case<TAB>message`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from stepstone.tasks import TASKS
from stepstone_cli.main import app

FAST = ("train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16")
ZOO = "zoo"  # the cases' zoo folder, relative to the case folder (the working directory)
TRAINED = ("sent-a", "sent-b")  # toy-sentiment bottleneck adapters, trained once per module
ALL_TASKS = ", ".join(TASKS)


def run(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------ inputs
def conllu(*rows: str) -> str:
    """CoNLL-U text: each row `ID FORM UPOS` (space-separated) becomes a 10-column word line; rows
    starting with '#' or empty stay as they are."""
    out = []
    for row in rows:
        if not row or row.startswith("#"):
            out.append(row)
            continue
        i, form, upos = row.split(" ")
        out.append("\t".join([i, form, "_", upos, "_", "_", "_", "_", "_", "_"]))
    return "\n".join(out) + "\n"


UDPOS_CONLLU = "data/target/udpos_conllu/en_gsd/en_gsd-ud-train.conllu"
UDPOS_TSV = "data/target/udpos/train-en.tsv"
PANX = "data/target/panx/train-en.tsv"
PAWSX = "data/target/pawsx/train-en.tsv"
SST2 = "data/intermediate/sst2/train.tsv"
SQUAD = "data/intermediate/squad/train.json"
HELLASWAG = "data/intermediate/hellaswag/train.jsonl"
SIQA = "data/intermediate/siqa/socialIQa_v1.4_trn.jsonl"
CSQA = "data/intermediate/commonsenseqa/train.jsonl"
COPA = "data/intermediate/copa_en/train-en.jsonl"
ANLI = "data/intermediate/anli/R{}/train.jsonl"
COSMOS = "data/intermediate/cosmosqa/train.csv"
CCG = "data/intermediate/ccg/train.auto"
TATOEBA = "data/target/tatoeba/tatoeba.deu-eng."
BUCC = "data/target/bucc2018/zh-en.dev."
COSMOS_HEADER = "id,context,question,answer0,answer1,answer2,answer3,label\n"


TYDIQA_TRAIN = "data/target/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json"
TYDIQA_DEV = "data/target/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.en.dev.json"


def blank_squad(context: str, questions: int) -> str:
    """A SQuAD file as XTREME ships its test sets: every answer blanked to "" at 0."""
    qas = [{"id": f"q{i}", "question": "Where?", "answers": [{"text": "", "answer_start": 0}]} for i in range(questions)]
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]})


def squad(context: str, answer: str, start: int) -> str:
    qa = {"id": "q1", "question": "Where?", "answers": [{"text": answer, "answer_start": start}]}
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]})


def train(task: str, *more: str) -> tuple[str, ...]:
    """`stepstone train` on local data under ./data: fails while reading, before any model is loaded."""
    return ("train", "--task", task, "--data-dir", "data", "--zoo", ZOO, "-q", *FAST, *more)


def retrieval(task: str, lang: str, split: str = "test") -> tuple[str, ...]:
    """`stepstone evaluate` of a bare backbone on a retrieval task (no run needed)."""
    return ("evaluate", "--backbone", "tiny", "--task", task, "--langs", lang, "--split", split,
            "--data-dir", "data", "--zoo", ZOO, "-q")


def on(composition: str, *more: str) -> tuple[str, ...]:
    return ("train", "--task", "toy-tags", "--on", composition, "--zoo", ZOO, "--name", "target", "-q", *FAST, *more)


# ---------------------------------------------------------------------------------- zoo damages
def manifest_edit(entry: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / ZOO / entry / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return setup


def other_backbone(manifest: dict) -> None:
    manifest["backbone"].update(name="xlm-roberta-base", fingerprint="0123456789abcdef")


def lora_method(manifest: dict) -> None:
    manifest["method"] = {"kind": "lora", "settings": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q", "v"]}}


def lora_method_on(*modules: str) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        lora_method(manifest)
        manifest["method"]["settings"]["target_modules"] = list(modules)
    return change


def houlsby_method(manifest: dict) -> None:
    manifest["method"] = {"kind": "houlsby", "settings": {"reduction_factor": 16, "non_linearity": "swish"}}


def ia3_method(manifest: dict) -> None:
    manifest["method"] = {"kind": "ia3", "settings": {"target_modules": ["k", "v", "intermediate"]}}


ELSEWHERE = "/elsewhere/multilingual-e5-small"  # a backbone folder that is not on this machine
# the folder digest of a folder holding only config.json = "{}": sha256 over "NAME\0SHA256\n" lines
MODEL_DIGEST = hashlib.sha256(f"config.json\0{hashlib.sha256(b'{}').hexdigest()}\n".encode()).hexdigest()


def folder_backbone(manifest: dict) -> None:
    """The member as trained on a local backbone folder elsewhere (a manifest written since issue 13)."""
    manifest["backbone"].update(name=ELSEWHERE, fingerprint="0123456789abcdef",
                                source={"local": ELSEWHERE, "sha256": "ab" * 32, "files": {"config.json": "cd" * 32}})


def newer_format(manifest: dict) -> None:
    manifest["format_version"] = 99


def delete_weights(root: Path) -> None:
    (root / ZOO / "sent-a" / "adapter.safetensors").unlink()


def corrupt_weights(root: Path) -> None:
    path = root / ZOO / "sent-a" / "adapter.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def broken_manifest(root: Path) -> None:
    (root / ZOO / "sent-a" / "manifest.json").write_text('{"format_version": 1,\n')


# ------------------------------------------------- artifact integrity, escaping paths, destinations (issue 13)
SENT_A = "roberta.encoder.layer.0.output.adapters.sent-a"  # sent-a's first adapter layer (hidden 128 / 16 = 8)


def rehash(entry: str) -> Callable[[Path], None]:
    """Re-record the sha256 of every file sent-a's manifest lists, as a tool that rewrote a file and its manifest
    would: the damage then gets past the hash check, to the check behind it."""
    def setup(root: Path) -> None:
        folder = root / ZOO / entry
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in manifest["files"]}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return setup


def then(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for step in setups:
            step(root)
    return setup


def tensors_edit(file: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        from safetensors.torch import load_file, save_file

        path = root / ZOO / "sent-a" / file
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))
    return then(setup, rehash("sent-a"))


def rename_tensor(tensors: dict) -> None:
    tensors[f"{SENT_A}.adapter_up.weightX"] = tensors.pop(f"{SENT_A}.adapter_up.weight")


def reshape_tensor(tensors: dict) -> None:
    import torch

    tensors[f"{SENT_A}.adapter_up.weight"] = torch.zeros(128, 4)


def extra_tensor(tensors: dict) -> None:
    import torch

    tensors[f"{SENT_A}.adapter_extra.weight"] = torch.zeros(2)


def file_edit(file: str, change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / ZOO / "sent-a" / file
        path.write_bytes(change(path.read_bytes()))
    return setup


def json_edit(file: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(data: bytes) -> bytes:
        config = json.loads(data)
        change(config)
        return json.dumps(config, indent=2).encode()
    return file_edit(file, edit)


def other_task(manifest: dict) -> None:
    """The manifest says toy-tags; the head saved with it is toy-sentiment's (a classification head)."""
    record = {**manifest["task"], "name": "toy-tags", "format": "tagging", "labels": ["O", "B-PER", "I-PER", "B-LOC",
                                                                                   "I-LOC"]}
    manifest.update(task=record, tasks=[record])


def other_labels(manifest: dict) -> None:
    record = {**manifest["task"], "labels": ["bad", "good"]}
    manifest.update(task=record, tasks=[record])


def task_field(field: str, value: str) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        record = {**manifest["task"], field: value}
        manifest.update(task=record, tasks=[record])
    return change


def link_outside(inside: str, outside: str, target: str, mkdir: bool = False) -> Callable[[Path], None]:
    """Move ROOT/inside to ROOT/outside (or make an empty folder there); a relative link `target` takes its place."""
    def setup(root: Path) -> None:
        (root / outside).parent.mkdir(parents=True, exist_ok=True)
        if mkdir:
            (root / outside).mkdir()
        else:
            shutil.move(root / inside, root / outside)
        os.symlink(target, root / inside)
    return setup


GRID_YAML = "intermediate: [toy-sentiment]\ntargets: [{task: toy-tags}]\nseeds: [0]\n"
EVAL = ("evaluate", "sent-a", "--zoo", ZOO, "--max-examples", "4", "-q")
# ------------------------------------------------------------- held locks, stopped runs (issue 13)
HELD = []  # locks held by this (test) process until the module ends: the refused CLI runs here too


def hold_lock(target: str) -> Callable[[Path], None]:
    """Another run holds the lock of `target` (relative to the case folder): its PID is this process's."""
    def setup(root: Path) -> None:
        from contextlib import ExitStack

        from stepstone.locks import exclusive

        stack = ExitStack()
        stack.enter_context(exclusive([root / target], "held"))
        HELD.append(stack)
    return setup


class Stop(Exception):
    """Stands for the process dying right after a checkpoint."""


def stack_stopped_then_member_replaced(root: Path) -> None:
    """`train --on Stack(sent-a)` stopped after its first checkpoint; then sent-a replaced by an adapter with
    other weights (its manifest rewritten to match: a re-trained entry, not a damaged one)."""
    from unittest import mock

    from safetensors.torch import load_file, save_file

    from stepstone.artifacts import sha256
    from stepstone.checkpoint import Checkpoints

    save = Checkpoints.save

    def save_then_stop(self, state):
        save(self, state)
        raise Stop

    with mock.patch.object(Checkpoints, "save", save_then_stop):
        stopped = run(*on("Stack(sent-a)", "--checkpoint-every", "1"))
    assert isinstance(stopped.exception, Stop), stopped.output
    weights = root / ZOO / "sent-a" / "adapter.safetensors"
    save_file({k: t + 1 for k, t in load_file(str(weights)).items()}, str(weights))
    manifest_edit("sent-a", lambda m: m["files"].update({"adapter.safetensors": sha256(weights)}))(root)


# ------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """argv: the command, run in the case's folder; files: relative path -> content, written first; zoo:
    trained entries copied into ./zoo; setup: damage done after that; message: the expected stderr line
    after 'error: ', literal except that `<*>` stands for any text (long lists of valid keys)."""

    argv: tuple[str, ...]
    message: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    zoo: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None


def case(id: str, argv, message: str, *, xfail: str | None = None, **kw):
    marks = [pytest.mark.xfail(strict=True, reason=f"needs: {xfail}")] if xfail else []
    return pytest.param(Case(tuple(argv), message, **kw), id=id, marks=marks)


NAME_RULE = "use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
WEIGHTS_RULE = ("weights are NAME=W for every member or for none (uniform), each W a finite number > 0; they are "
                "normalised to sum 1")  # Average and zoo merge (issue 14)
NO_OVERLAP = ("QA windows overlap by doc_stride tokens, and without overlap an answer that crosses a window boundary "
              "is in no window")
WINDOWS = "QA windows of max_length tokens overlap by doc_stride tokens"
GRID = "preset: tiny\ntargets: [{task: toy-tags}]\nseeds: [0]\n"  # + intermediate tasks and setups


def toy(task: str, *more: str) -> tuple[str, ...]:
    """`stepstone train` of a toy task (no data files): settings problems found before or at the backbone's load."""
    return ("train", "--task", task, "--zoo", ZOO, "-q", *FAST, *more)


def rank_cmd(target: str, *more: str) -> tuple[str, ...]:
    """`stepstone rank` in the case's zoo: every check fails before a model is loaded or a feature cached."""
    return ("rank", "--target", target, "--zoo", ZOO, "-q", *more)


def evaluate_cmd(*more: str) -> tuple[str, ...]:
    """`stepstone evaluate sent-a` in the case's zoo (perturb and data-file cases, issue 16)."""
    return ("evaluate", "sent-a", "--zoo", ZOO, "-q", *more)


def panx_head(manifest: dict) -> None:
    """The entry's head recorded as a PAN-X head: a task with a local file format (checked before any load)."""
    task = {**manifest["task"], "name": "panx", "format": "tagging",
            "labels": ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]}
    manifest.update(task=task, tasks=[task])


def trained_qa(root: Path) -> None:
    """A toy-qa adapter 'qa' (max_length 32, doc_stride 8) in the case's zoo, trained before the snapshot."""
    done = run("train", "--task", "toy-qa", "--name", "qa", "--zoo", root / ZOO, "-q", *FAST, "train.max_length=32",
               "train.doc_stride=8")
    assert done.exit_code == 0, done.output

CASES = [
    # -------------------------------------------------------------- CoNLL-U (udpos, raw UD files)
    case("conllu-wrong-column-count", train("udpos"),
         f"{UDPOS_CONLLU}:3: expected 10 tab-separated columns, found 9",
         files={UDPOS_CONLLU: conllu("# sent_id = 1", "1 A DET") + "2\tdog\t_\tNOUN\t_\t_\t_\t_\t_\n"}),
    case("conllu-bad-word-id", train("udpos"),
         f"{UDPOS_CONLLU}:3: bad word ID '2-' (expected N, N-M or N.M)",
         files={UDPOS_CONLLU: conllu("# sent_id = 1", "1 A DET", "2- dogs _")}),
    case("conllu-reversed-multiword-range", train("udpos"),
         f"{UDPOS_CONLLU}:2: bad multiword token range '3-2' (expected N-M with N < M)",
         files={UDPOS_CONLLU: conllu("1 A DET", "3-2 im _", "2 dog NOUN")}),
    case("conllu-bad-empty-node", train("udpos"),
         f"{UDPOS_CONLLU}:3: bad word ID '1.' (expected N, N-M or N.M)",
         files={UDPOS_CONLLU: conllu("1 A DET", "1.1 is _", "1. x _", "2 dog NOUN")}),
    case("conllu-unknown-upos", train("udpos"),
         f"{UDPOS_CONLLU}:4: label 'NOUNS' is not a label of task 'udpos' (valid: ADJ, ADP, ADV, AUX, CCONJ, DET, "
         "INTJ, NOUN, NUM, PART, PRON, PROPN, PUNCT, SCONJ, SYM, VERB, X)",
         files={UDPOS_CONLLU: conllu("# text = A dog", "1-2 Adog _", "1 A DET", "2 dog NOUNS", "2.1 is _")}),
    case("conllu-invalid-utf8", train("udpos"), f"{UDPOS_CONLLU}:2: not valid UTF-8",
         files={UDPOS_CONLLU: conllu("1 A DET").encode() + b"2\tdo\xffg\t_\tNOUN\t_\t_\t_\t_\t_\t_\n"}),
    # -------------------------------------------------------------- XTREME tagging tsv (udpos, panx)
    case("tagging-tsv-empty-file", train("udpos"), f"{UDPOS_TSV}: empty file", files={UDPOS_TSV: "\n\n"}),
    case("tagging-tsv-wrong-column-count", train("panx"),
         f"{PANX}:2: expected 2 tab-separated columns, found 3", files={PANX: "Paris\tB-LOC\nis\tO\textra\n"}),
    case("tagging-tsv-unknown-tag", train("panx"),
         f"{PANX}:4: label 'B-MISC' is not a label of task 'panx' (valid: B-LOC, B-ORG, B-PER, I-LOC, I-ORG, I-PER, O)",
         files={PANX: "Paris\tB-LOC\n\nthe\tO\nEuro\tB-MISC\n"}),
    case("tagging-tsv-empty-tag", train("panx"), f"{PANX}:1: empty tag", files={PANX: "Paris\t\n"}),
    # -------------------------------------------------------------- sentence-pair tsv (pawsx)
    case("pair-tsv-wrong-column-count", train("pawsx"),
         f"{PAWSX}:2: expected 3 tab-separated columns, found 2", files={PAWSX: "a b\tb a\t1\nc d\t0\n"}),
    case("pair-tsv-unknown-label", train("pawsx"),
         f"{PAWSX}:2: label '2' is not a label of task 'pawsx' (valid: 0, 1)", files={PAWSX: "a\tb\t1\nc\td\t2\n"}),
    case("pair-tsv-invalid-utf8", train("pawsx"), f"{PAWSX}:2: not valid UTF-8",
         files={PAWSX: b"a\tb\t1\nc\xe9\td\t0\n"}),
    case("pair-tsv-empty-label", train("pawsx"), f"{PAWSX}:1: empty label", files={PAWSX: "a\tb\t \n"}),
    # -------------------------------------------------------------- single-sentence tsv (sst2)
    case("single-tsv-too-few-columns", train("sst2"),
         f"{SST2}:1: expected at least 2 tab-separated columns, found 1", files={SST2: "sentence\nnice film\n"}),
    case("single-tsv-header-only", train("sst2"), f"{SST2}: no examples in the file",
         files={SST2: "sentence\tlabel\n"}),
    case("single-tsv-unknown-label", train("sst2"),
         f"{SST2}:3: label 'positive' is not a label of task 'sst2' (valid: 0, 1)",
         files={SST2: "sentence\tlabel\nbad film\t0\nnice film\tpositive\n"}),
    # -------------------------------------------------------------- SQuAD json (squad)
    case("squad-answer-offset-mismatch", train("squad"),
         f"{SQUAD}: question 'q1': answer 'Paris' is not at offset 3 of its context",
         files={SQUAD: squad("It is Paris.", "Paris", 3)}),
    case("squad-invalid-json", train("squad"), f"{SQUAD}:2: invalid JSON: Expecting value",
         files={SQUAD: '{"data":\n  [,]}\n'}),
    case("squad-not-squad", train("squad"),
         f"{SQUAD}: not a SQuAD file (expected an object with a 'data' list)", files={SQUAD: '{"version": "1.1"}'}),
    case("squad-no-questions", train("squad"), f"{SQUAD}: no examples in the file",
         files={SQUAD: '{"version": "1.1", "data": []}'}),
    # -------------------------------------------------------------- jsonl multiple choice + ANLI
    case("jsonl-hellaswag-label-out-of-range", train("hellaswag"),
         f"{HELLASWAG}:2: label '4' is not one of 0, 1, 2, 3",
         files={HELLASWAG: '{"ctx": "A", "endings": ["a", "b", "c", "d"], "label": 0}\n'
                           '{"ctx": "B", "endings": ["a", "b", "c", "d"], "label": 4}\n'}),
    case("jsonl-siqa-invalid-json", train("siqa"), f"{SIQA}:1: invalid JSON: Expecting property name enclosed "
         "in double quotes", files={SIQA: "{context: 1}\n"}),
    case("jsonl-commonsenseqa-unknown-answer-key", train("commonsenseqa"),
         f"{CSQA}:1: answerKey 'F' is not one of A, B",
         files={CSQA: '{"question": "q", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "F"}\n'}),
    case("jsonl-copa-missing-key", train("copa"), f"{COPA}:1: missing key 'choice2'",
         files={COPA: '{"premise": "p", "choice1": "a", "question": "cause", "label": 0}\n'}),
    case("jsonl-anli-unknown-label", train("anli"), f"{ANLI.format(2)}:1: label 'x' is not one of c, e, n",
         files={ANLI.format(1): '{"context": "c", "hypothesis": "h", "label": "e"}\n',
                ANLI.format(2): '{"context": "c", "hypothesis": "h", "label": "x"}\n',
                ANLI.format(3): '{"context": "c", "hypothesis": "h", "label": "n"}\n'}),
    # -------------------------------------------------------------- csv multiple choice (cosmosqa)
    case("csv-cosmosqa-wrong-column-count", train("cosmosqa"), f"{COSMOS}:3: expected 8 columns, found 7",
         files={COSMOS: COSMOS_HEADER + "1,c,q,a,b,c,d,0\n2,c,q,a,b,c,d\n"}),
    case("csv-cosmosqa-missing-column", train("cosmosqa"),
         f"{COSMOS}:1: missing column(s) label (found: id, context, question, answer0, answer1, answer2, answer3)",
         files={COSMOS: "id,context,question,answer0,answer1,answer2,answer3\n1,c,q,a,b,c,d\n"}),
    case("csv-cosmosqa-label-out-of-range", train("cosmosqa"), f"{COSMOS}:2: label '7' is not one of 0, 1, 2, 3",
         files={COSMOS: COSMOS_HEADER + "1,c,q,a,b,c,d,7\n"}),
    # -------------------------------------------------------------- CCGbank AUTO (ccg)
    case("ccg-not-a-derivation", train("ccg"),
         f"{CCG}:2: not a CCGbank AUTO derivation (expected (<L CAT POS POS WORD CAT>) leaves)",
         files={CCG: "ID=wsj_0001.1 PARSER=GOLD NUMPARSE=1\nthis is not a tree\n"}),
    # -------------------------------------------------------------- Tatoeba line files
    case("tatoeba-different-line-counts", retrieval("tatoeba", "de"),
         f"{TATOEBA}deu has 3 lines but {TATOEBA}eng has 2: not aligned",
         files={TATOEBA + "deu": "Hallo.\nDanke.\nJa.\n", TATOEBA + "eng": "Hello.\nThanks.\n"}),
    case("tatoeba-missing-english-side", retrieval("tatoeba", "de"), f"{TATOEBA}eng: file not found",
         files={TATOEBA + "deu": "Hallo.\n"}),
    case("tatoeba-invalid-utf8", retrieval("tatoeba", "de"), f"{TATOEBA}eng:2: not valid UTF-8",
         files={TATOEBA + "deu": "Hallo.\nDanke.\n", TATOEBA + "eng": b"Hello.\nThank\xc3s.\n"}),
    # -------------------------------------------------------------- BUCC line files
    case("bucc-gold-id-not-in-side", retrieval("bucc", "zh", "validation"),
         f"{BUCC}gold:1: id 'zh-9' is not in {BUCC}zh",
         files={BUCC + "zh": "zh-1\t你好\n", BUCC + "en": "en-1\thello\n", BUCC + "gold": "zh-9\ten-1\n"}),
    case("bucc-duplicate-id", retrieval("bucc", "zh", "validation"),
         f"{BUCC}en:2: duplicate id 'en-1' (first on line 1)",
         files={BUCC + "zh": "zh-1\t你好\n", BUCC + "en": "en-1\thello\nen-1\thi\n", BUCC + "gold": "zh-1\ten-1\n"}),
    case("bucc-wrong-column-count", retrieval("bucc", "zh", "validation"),
         f"{BUCC}zh:1: expected 2 tab-separated columns, found 1",
         files={BUCC + "zh": "你好\n", BUCC + "en": "en-1\thello\n", BUCC + "gold": "zh-1\ten-1\n"}),
    # -------------------------------------------------------------- data layout
    case("data-file-missing", train("pawsx"),
         "no train file for language 'en' under data (looked for: target/pawsx/train-en.tsv)",
         files={"data/target/pawsx/dev-en.tsv": "a\tb\t1\n"}),
    # -------------------------------------------------------------- YAML config and overrides
    case("yaml-unknown-key", ("train", "--config", "run.yaml", "--zoo", ZOO),
         "run.yaml:4: unknown key 'train.lrr' (valid: <*>), did you mean 'lr'?",
         files={"run.yaml": "task: toy-tags\ntrain:\n  epochs: 1\n  lrr: 0.1\n"}),
    case("yaml-wrong-type", ("train", "--config", "run.yaml", "--zoo", ZOO),
         "run.yaml:3: 'train.epochs' must be an integer, got 'two'",
         files={"run.yaml": "task: toy-tags\ntrain:\n  epochs: two\n"}),
    case("yaml-bad-choice", ("train", "--config", "run.yaml", "--zoo", ZOO),
         "run.yaml:3: 'method.kind' must be one of: bottleneck, full, houlsby, ia3, lora (got 'lorra')",
         files={"run.yaml": "task: toy-tags\nmethod:\n  kind: lorra\n"}),
    case("yaml-syntax-error", ("train", "--config", "run.yaml", "--zoo", ZOO),
         "run.yaml:3: invalid YAML: <*>", files={"run.yaml": "task: toy-tags\ntrain:\n  epochs: [1\n"}),
    case("yaml-duplicate-key", ("train", "--config", "run.yaml", "--zoo", ZOO),
         "run.yaml:2: duplicate key 'task'", files={"run.yaml": "task: toy-tags\ntask: toy-qa\n"}),
    case("yaml-not-a-mapping", ("train", "--config", "run.yaml", "--zoo", ZOO),
         "run.yaml:1: expected a mapping of keys at the top level, got a list",
         files={"run.yaml": "- task: toy-tags\n"}),
    case("override-not-key-value", ("train", "--task", "toy-tags", "--zoo", ZOO, "train.lr"),
         "bad override 'train.lr': expected KEY=VALUE, e.g. train.lr=3e-4"),
    case("override-empty-key-part", ("train", "--task", "toy-tags", "--zoo", ZOO, "train..lr=1"),
         "bad override 'train..lr=1': expected KEY=VALUE, e.g. train.lr=3e-4"),
    case("override-unknown-key", ("train", "--task", "toy-tags", "--zoo", ZOO, "train.lrr=1"),
         "<command line>: unknown key 'train.lrr' (valid: <*>), did you mean 'lr'?"),
    case("override-wrong-type", ("train", "--task", "toy-tags", "--zoo", ZOO, "train.epochs=[1"),
         "bad override 'train.epochs=[1': invalid value: <*>"),
    # -------------------------------------------------------------- unknown names
    case("unknown-task", ("train", "--task", "xnlii", "--zoo", ZOO),
         f"unknown task 'xnlii' (valid: {ALL_TASKS}), did you mean 'xnli'?"),
    case("unknown-method", ("train", "--task", "toy-tags", "--method", "adapter", "--zoo", ZOO),
         "<command line>: 'method.kind' must be one of: bottleneck, full, houlsby, ia3, lora (got 'adapter')"),
    case("unknown-backbone-folder", ("train", "--task", "toy-tags", "--backbone", "./no-such-model", "--zoo", ZOO,
                                     *FAST), "backbone './no-such-model' is not a model directory (expected a folder with config.json); use 'tiny', "
         "a local model directory or a hub id such as 'xlm-roberta-large'"),
    case("unknown-backbone-hub-id", ("train", "--task", "toy-tags", "--backbone", "no-such-org/no-such-model",
                                      "--zoo", ZOO, *FAST),
         "cannot load backbone 'no-such-org/no-such-model': not 'tiny', not a local directory, and the hub did not "
         "provide it (<*>)"),
    case("unknown-evaluation-split", ("evaluate", "--backbone", "tiny", "--task", "tatoeba", "--split", "dev",
                                      "--zoo", ZOO), "unknown split 'dev' (valid: train, validation, test)"),
    case("unknown-language", retrieval("tatoeba", "xx"), "task 'tatoeba' has no language 'xx' (valid: <*>)"),
    # -------------------------------------------------------------- composition
    case("unknown-composition-member", on("Stack(sent-a, ghost)"),
         "no zoo entry 'ghost' in zoo (entries: sent-a)", zoo=("sent-a",)),
    case("malformed-composition", on("Stack(sent-a"),
         "bad composition 'Stack(sent-a': expected Stack(NAME, ...) or Fuse(NAME, NAME, ...) over zoo entries"),
    case("unknown-composition-block", on("Mix(sent-a, sent-b)"),
         "bad composition 'Mix(sent-a, sent-b)': expected Stack(NAME, ...) or Fuse(NAME, NAME, ...) over zoo entries"),
    case("composition-empty-member", on("Fuse(sent-a,,sent-b)"), "bad composition 'Fuse(sent-a,,sent-b)': empty member name"),
    case("fuse-of-one", on("Fuse(sent-a)"), "bad composition 'Fuse(sent-a)': Fuse needs at least two members"),
    case("fuse-members-from-different-backbones", on("Fuse(sent-a, sent-b)"),
         "composition members come from different backbones: sent-a: tiny (<*>), "
         "sent-b: xlm-roberta-base (0123456789abcdef)", zoo=TRAINED, setup=manifest_edit("sent-b", other_backbone)),
    case("fuse-with-lora-member", on("Fuse(sent-a, sent-b)"),
         "Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); LoRA member(s): sent-b. "
         "Use Stack for LoRA adapters", zoo=TRAINED, setup=manifest_edit("sent-b", lora_method)),
    case("member-from-another-backbone", on("Stack(sent-b)"),
         "'sent-b' was trained on backbone 'xlm-roberta-base' (fingerprint 0123456789abcdef), "
         "not on the loaded 'tiny' (fingerprint <*>)", zoo=("sent-b",), setup=manifest_edit("sent-b", other_backbone)),
    # -------------------------------------------------------------- zoo entries
    case("zoo-weights-missing", on("Stack(sent-a)"),
         "'zoo/sent-a': weights file adapter.safetensors is missing", zoo=("sent-a",), setup=delete_weights),
    case("zoo-weights-corrupted", ("zoo", "show", "sent-a", "--zoo", ZOO),
         "'zoo/sent-a': weights file adapter.safetensors is corrupted (sha256 mismatch)",
         zoo=("sent-a",), setup=corrupt_weights),
    case("zoo-manifest-newer-format", ("zoo", "show", "sent-a", "--zoo", ZOO),
         "zoo/sent-a/manifest.json: format version 99 is newer than this stepstone understands (2); "
         "upgrade stepstone", zoo=("sent-a",), setup=manifest_edit("sent-a", newer_format)),
    case("zoo-manifest-invalid-json", ("zoo", "list", "--zoo", ZOO),
         "zoo/sent-a/manifest.json: not valid JSON (<*>)", zoo=("sent-a",), setup=broken_manifest),
    case("zoo-name-traversal", ("zoo", "show", "../x", "--zoo", ZOO), f"invalid zoo entry name '../x': {NAME_RULE}"),
    case("zoo-name-absolute", ("zoo", "rm", "/tmp/x", "--yes", "--zoo", ZOO),
         f"invalid zoo entry name '/tmp/x': {NAME_RULE}"),
    case("train-name-traversal", ("train", "--task", "toy-tags", "--name", "../x", "--zoo", ZOO),
         f"<command line>: invalid run name '../x': {NAME_RULE}"),
    case("zoo-rm-unknown-entry", ("zoo", "rm", "ghost", "--yes", "--zoo", ZOO),
         "no zoo entry 'ghost' in zoo (entries: sent-a)", zoo=("sent-a",)),
    case("train-name-taken", ("train", "--task", "toy-sentiment", "--name", "sent-a", "--zoo", ZOO, *FAST),
         "'zoo/sent-a' already exists; pick another --name or remove it first", zoo=("sent-a",)),
    # -------------------------------------------------------------- evaluation
    case("evaluate-missing-run", ("evaluate", "runs/ghost", "--zoo", ZOO),
         "'runs/ghost' is neither a run directory nor a zoo entry in zoo"),
    case("evaluate-task-without-head", ("evaluate", "sent-a", "--task", "pawsx", "--zoo", ZOO),
         "'sent-a' has no head for task 'pawsx' (heads: toy-sentiment); retrieval tasks (bucc, tatoeba) work with "
         "any artifact", zoo=("sent-a",)),
    case("grid-yaml-typo", ("grid", "grid.yaml", "-q"), "grid.yaml:3: unknown key 'seedz' (valid: <*>), did you mean 'seeds'?",
         files={"grid.yaml": "intermediate: [toy-sentiment]\ntargets: [{task: toy-tags}]\nseedz: [0]\n"}),
    case("grid-unknown-target-task", ("grid", "grid.yaml", "-q"),
         f"grid.yaml:2: unknown task 'toy-tagz' in 'targets[0].task' (valid: {ALL_TASKS}), did you mean 'toy-tags'?",
         files={"grid.yaml": "intermediate: [toy-sentiment]\ntargets: [{task: toy-tagz}]\nseeds: [0]\n"}),
    # where a grid's cells run (issue 17: --workers, --executor, the spec's executor: section)
    case("grid-workers-zero-in-spec", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: 'executor': workers must be at least 1 (got 0)",
         files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID + "executor:\n  workers: 0\n"}),
    case("grid-executor-key-typo", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: unknown key 'executor.worker' (valid: engine, retries, slurm, threads, workers), did you mean "
         "'workers'?", files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID + "executor:\n  worker: 2\n"}),
    case("grid-executor-not-a-mapping", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: 'executor' must be a mapping of settings, e.g. {workers: 2}",
         files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID + "executor: 2\n"}),
    case("grid-slurm-time-zero-in-spec", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: 'executor.slurm': slurm.time_min must be at least 1 (got 0)",
         files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID + "executor:\n  slurm: {time_min: 0}\n"}),
    case("grid-workers-zero", ("grid", "grid.yaml", "--workers", "0", "-q"), "--workers must be at least 1 (got 0)",
         files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID}),
    case("grid-time-min-zero", ("grid", "grid.yaml", "--time-min", "0", "-q"), "--time-min must be at least 1 (got 0)",
         files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID}),
    case("grid-unknown-executor", ("grid", "grid.yaml", "--executor", "slurn", "-q"),
         "--executor 'slurn' is not one of: local, slurm, submitit-local, did you mean 'slurm'?",
         files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID}),
    case("grid-workers-without-isolation", ("grid", "grid.yaml", "--workers", "2", "--no-isolate", "-q"),
         "--no-isolate runs each cell in this process, one at a time; --workers runs cells in processes of their own: "
         "drop --no-isolate", files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID}),
    case("grid-slurm-without-slurm", ("grid", "grid.yaml", "--executor", "slurm", "-q"),
         "--executor slurm submits SLURM jobs, but this machine has no SLURM (srun is not on PATH): run the grid on "
         "the cluster's login node, or try it here with --executor submitit-local",
         files={"grid.yaml": "intermediate: [toy-sentiment]\n" + GRID}),
    case("report-not-a-grid-folder", ("report", "grids/none"),
         "grids/none/cells.jsonl: not found; is 'grids/none' a grid folder? Run the grid first",
         files={"grids/none/x.txt": "x"}),
    case("summary-not-a-report", ("summary", "x.json"),
         "x.json: not a stepstone evaluation report (missing key 'metric')", files={"x.json": '{"task": "xnli"}'}),
    case("evaluate-folder-without-manifest", ("evaluate", "runs/empty", "--zoo", ZOO),
         "'runs/empty' is not a stepstone artifact: manifest.json is missing", files={"runs/empty/notes.txt": "x"}),
    # ---- cli (issue 13): backbones against composition members, zoo show, task names
    case("backbone-differs-from-members", on("Stack(sent-b)", "--backbone", "tiny"),
         "backbone 'tiny' is not the one the composition members were trained on: 'sent-b' was trained on "
         f"'{ELSEWHERE}' (folder sha256 {'ab' * 8}); leave --backbone out to train on theirs",
         zoo=("sent-b",), setup=manifest_edit("sent-b", folder_backbone)),
    case("backbone-folder-differs-from-members", on("Stack(sent-b)", "--backbone", "model"),
         f"backbone 'model' (folder sha256 {MODEL_DIGEST[:16]}) is not the one the composition members were trained "
         f"on: 'sent-b' was trained on '{ELSEWHERE}' (folder sha256 {'ab' * 8}); leave --backbone out to train on "
         "theirs", zoo=("sent-b",), setup=manifest_edit("sent-b", folder_backbone), files={"model/config.json": "{}"}),
    case("backbone-differs-from-older-members", on("Stack(sent-b)", "--backbone", "tiny"),
         "backbone 'tiny' is not the one the composition members were trained on: 'sent-b' was trained on "
         "'xlm-roberta-base' (fingerprint 0123456789abcdef); train on theirs: --backbone xlm-roberta-base",
         zoo=("sent-b",), setup=manifest_edit("sent-b", other_backbone)),
    case("backbone-folder-moved", ("evaluate", "sent-b", "--zoo", ZOO, "--langs", "en", "-q"),
         f"'sent-b' was trained on the backbone folder '{ELSEWHERE}', which is not there: pass --backbone with "
         "where it is now (its fingerprint is checked)", zoo=("sent-b",), setup=manifest_edit("sent-b", folder_backbone)),
    case("on-backbone-folder-moved", on("Stack(sent-b)"),
         f"'sent-b' was trained on the backbone folder '{ELSEWHERE}', which is not there: pass --backbone with "
         "where it is now (its content is checked)", zoo=("sent-b",), setup=manifest_edit("sent-b", folder_backbone)),
    case("zoo-show-folder-without-manifest", ("zoo", "show", "notes", "--zoo", ZOO),
         "'notes' is neither a zoo entry in zoo nor a run folder: it holds no manifest.json",
         zoo=("sent-a",), files={"notes/todo.txt": "x"}),
    case("evaluate-unknown-task-suggests", ("evaluate", "sent-a", "--task", "xnlii", "--zoo", ZOO),
         f"unknown task 'xnlii' (valid: {ALL_TASKS}), did you mean 'xnli'?", zoo=("sent-a",)),
    case("yaml-unknown-task-suggests", ("train", "--config", "run.yaml", "--zoo", ZOO),
         f"run.yaml:2: unknown task 'toy-tagz' (valid: {ALL_TASKS}), did you mean 'toy-tags'?",
         files={"run.yaml": "name: tags\ntask: [toy-tagz]\n"}),
    # ---- task data, languages and upstream layouts (issue 13)
    case("mc-hellaswag-wrong-ending-count", train("hellaswag"), f"{HELLASWAG}:2: expected 4 endings, found 5",
         files={HELLASWAG: '{"ctx": "A", "endings": ["a", "b", "c", "d"], "label": 0}\n'
                           '{"ctx": "B", "endings": ["a", "b", "c", "d", "e"], "label": 4}\n'}),
    case("mc-commonsenseqa-wrong-choice-count", train("commonsenseqa"), f"{CSQA}:1: expected 5 choices, found 4",
         files={CSQA: '{"question": "q", "choices": {"label": ["A", "B", "C", "D"], "text": ["w", "x", "y", "z"]}, '
                      '"answerKey": "B"}\n'}),
    case("mc-siqa-wrong-answer-count", train("siqa"), f"{SIQA}:1: expected 3 answers, found 4",
         files={SIQA: '{"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c", '
                      '"answerD": "d", "correct": "A"}\n'}),
    case("mc-copa-wrong-choice-count", train("copa"), f"{COPA}:1: expected 2 choices, found 3",
         files={COPA: '{"premise": "p", "choice1": "a", "choice2": "b", "choice3": "c", "question": "cause", '
                      '"label": 0}\n'}),
    case("mc-cosmosqa-wrong-answer-count", train("cosmosqa"), f"{COSMOS}:1: expected 4 answers, found 5",
         files={COSMOS: "id,context,question,answer0,answer1,answer2,answer3,answer4,label\n1,c,q,a,b,c,d,e,0\n"}),
    case("dev-file-with-blank-answers", train("tydiqa"),
         f"{TYDIQA_DEV}: no gold answers: all 2 questions have an answer with empty text; to train without a dev "
         "set, pass train.dev=false train.select_best=false",
         files={TYDIQA_TRAIN: squad("It is Paris.", "Paris", 6),
                TYDIQA_DEV: blank_squad("It is Paris.", 2)}),
    case("dev-file-without-labels", train("pawsx"),
         "data/target/pawsx/dev-en.tsv:1: expected at least 3 tab-separated columns, found 2; to train without a "
         "dev set, pass train.dev=false train.select_best=false",
         files={PAWSX: "a\tb\t1\n", "data/target/pawsx/dev-en.tsv": "a\tb\nc\td\n"}),
    case("xtreme-test-file-without-its-labels", retrieval("tatoeba", "de"),
         "data/target/tatoeba/de-en.de: found, but not data/labels/tatoeba/test-de.tsv that goes with it (XTREME "
         "ships its test labels separately)",
         files={"data/target/tatoeba/de-en.de": "Hallo.\n", "data/target/tatoeba/de-en.en": "Hello.\n"}),
    case("unknown-language-without-local-file", retrieval("bucc", "xx", "validation"),
         "task 'bucc' has no language 'xx' (valid: de, fr, ru, zh; or any language with a local validation file, "
         "none under data: looked for target/bucc2018/xx-en.dev.gold)"),
    case("evaluate-no-language-has-data", ("evaluate", "--backbone", "tiny", "--task", "bucc", "--split",
                                           "validation", "--data-dir", "data", "--zoo", ZOO, "-q"),
         "no validation data for task 'bucc' in any language asked for: no validation file for language 'de' under "
         "data (looked for: target/bucc2018/de-en.dev.gold) (and likewise for 3 more: fr, ru, zh)",
         files={"data/target/bucc2018/README": "nothing here"}),
    # ---- progress, printing and tracking (issue 13)
    # user text in an error prints as it is: square brackets are not rich markup, :x: is not an emoji code
    case("log-unknown-tracker", ("train", "--task", "toy-tags", "--log", "tensorboard,comet", "--zoo", ZOO),
         "unknown --log 'comet' (valid: tensorboard, wandb, mlflow; train_log.jsonl is always written)"),
    case("config-path-with-brackets", ("train", "--config", "run[x].yaml", "--zoo", ZOO),
         "config file not found: run[x].yaml"),
    case("unknown-task-like-markup", ("train", "--task", "[bold]x[/]", "--zoo", ZOO),
         f"unknown task '[bold]x[/]' (valid: {ALL_TASKS})"),
    case("unknown-task-like-an-emoji-code", ("train", "--task", ":x:", "--zoo", ZOO),
         f"unknown task ':x:' (valid: {ALL_TASKS})"),
    case("run-name-with-brackets-and-backslash", ("train", "--task", "toy-tags", "--name", "[red]a\\", "--zoo", ZOO),
         f"<command line>: invalid run name '[red]a\\': {NAME_RULE}"),
    case("evaluate-run-path-with-brackets", ("evaluate", "runs/[b]ghost", "--zoo", ZOO),
         "'runs/[b]ghost' is neither a run directory nor a zoo entry in zoo"),
    # ---- crashes on valid settings, settings that cannot mean what the user wants (issue 13)
    case("max-length-over-position-limit", toy("toy-tags", "train.max_length=100000"),
         "train.max_length is 100000, but backbone 'tiny' takes at most 512 tokens (max_position_embeddings 514, "
         "positions start at 2): set train.max_length to 512 or less"),
    case("evaluate-max-length-over-position-limit", ("evaluate", "sent-a", "--zoo", ZOO, "-q", "--max-length", "513"),
         "--max-length is 513, but backbone 'tiny' takes at most 512 tokens (max_position_embeddings 514, positions "
         "start at 2): set --max-length to 512 or less", zoo=("sent-a",)),
    case("evaluate-max-length-zero", ("evaluate", "sent-a", "--zoo", ZOO, "-q", "--max-length", "0"),
         "--max-length must be at least 1 (got 0)", zoo=("sent-a",)),
    case("doc-stride-zero", toy("toy-qa", "train.doc_stride=0"), f"train.doc_stride must be at least 1 (got 0): {NO_OVERLAP}"),
    case("doc-stride-negative", toy("toy-qa", "train.doc_stride=-4"),
         f"train.doc_stride must be at least 1 (got -4): {NO_OVERLAP}"),
    case("doc-stride-not-below-max-length", toy("toy-qa", "train.max_length=32"),
         f"train.doc_stride (64) must be smaller than train.max_length (32): {WINDOWS}"),
    case("evaluate-doc-stride-zero", ("evaluate", "qa", "--zoo", ZOO, "-q", "--doc-stride", "0"),
         f"--doc-stride must be at least 1 (got 0): {NO_OVERLAP}", setup=trained_qa),
    case("evaluate-doc-stride-not-below-max-length", ("evaluate", "qa", "--zoo", ZOO, "-q", "--max-length", "8"),
         f"the run's train.doc_stride (8) must be smaller than --max-length (8): {WINDOWS}", setup=trained_qa),
    case("evaluate-doc-stride-on-a-task-without-windows", ("evaluate", "sent-a", "--zoo", ZOO, "-q", "--doc-stride", "8"),
         "--doc-stride applies to QA tasks only: 'toy-sentiment' is a classification task, which has no windows",
         zoo=("sent-a",)),
    case("reduction-factor-over-hidden-size", toy("toy-tags", "method.bottleneck.reduction_factor=129"),
         "method.bottleneck.reduction_factor is 129, larger than the backbone's hidden size 128: the bottleneck "
         "(hidden size / reduction factor) would have no units; use a reduction factor of at most 128"),
    case("lora-rank-over-hidden-size", toy("toy-tags", "--method", "lora", "method.lora.r=129"),
         "method.lora.r is 129, larger than the backbone's hidden size 128: the update of a layer with 128 inputs or "
         "outputs has rank at most 128; use r <= 128"),
    case("lora-alpha-zero", toy("toy-tags", "--method", "lora", "method.lora.alpha=0"),
         "<command line>: 'method.lora': lora.alpha must be > 0 (got 0): the update is scaled by alpha / r, so 0 "
         "switches it off"),
    case("lora-dropout-one", toy("toy-tags", "--method", "lora", "method.lora.dropout=1.0"),
         "<command line>: 'method.lora': lora.dropout must be in [0, 1)"),
    case("settings-of-another-method", toy("toy-tags", "--method", "lora", "method.bottleneck.reduction_factor=4"),
         "<command line>: 'method': method.bottleneck settings are given, but method.kind is lora, which does not use "
         "them: set method.kind to bottleneck, or drop them"),
    # issue 17 part 3: AdapterDrop, the frozen-layer cache
    case("leave-out-negative", toy("toy-tags", "method.bottleneck.leave_out=-1"),
         "<command line>: 'method.bottleneck': bottleneck.leave_out must be >= 0 (the number of lowest layers without "
         "an adapter), got -1"),
    case("leave-out-every-layer", toy("toy-tags", "--method", "lora", "method.lora.leave_out=2"),
         "method.lora.leave_out is 2, but the backbone has 2 layers: no layer would hold an adapter; use 0 to 1"),
    case("cache-with-backbone-dropout", toy("toy-tags", "train.cache_frozen_layers=true"),
         "<command line>: 'train': cache_frozen_layers needs backbone_dropout=false: with the backbone's dropout on, "
         "its layers are not a pure function of the input, so their output cannot be reused"),
    case("cache-without-leave-out", toy("toy-tags", "train.cache_frozen_layers=true", "train.backbone_dropout=false"),
         "<command line>: train.cache_frozen_layers needs method.bottleneck.leave_out >= 1 (the lowest layers without "
         "an adapter are what is cached); it is 0"),
    case("cache-full-fine-tune", toy("toy-tags", "--full-finetune", "train.cache_frozen_layers=true",
                                     "train.backbone_dropout=false"),
         "<command line>: train.cache_frozen_layers: full fine-tuning trains every layer: nothing to cache; set "
         "train.cache_frozen_layers=false"),
    case("cache-under-a-zoo-member-in-layer-0",
         toy("toy-sentiment", "--on", "Stack(sent-a)", "--name", "t", "train.cache_frozen_layers=true",
             "train.backbone_dropout=false", "method.bottleneck.leave_out=1"),
         "train.cache_frozen_layers: nothing to cache: the backbone's layer 0 holds "
         "output.adapters.sent-a.adapter_down.0.weight (trainable, or an adapter); give the adapter (and every "
         "composed zoo adapter) leave_out >= 1, or set train.cache_frozen_layers=false", zoo=("sent-a",)),
    case("weight-decay-negative", toy("toy-tags", "train.weight_decay=-0.01"),
         "<command line>: 'train': weight_decay must be >= 0 (got -0.01): a negative one grows the weights"),
    case("max-grad-norm-zero", toy("toy-tags", "train.max_grad_norm=0"),
         "<command line>: 'train': max_grad_norm must be > 0 (got 0.0): gradients are clipped to this norm, so 0 "
         "would stop every update"),
    case("threads-zero", toy("toy-tags", "train.threads=0"),
         "<command line>: 'train': threads must be >= 1, or null for $STEPSTONE_THREADS / torch's default (got 0)"),
    case("seed-out-of-range", toy("toy-tags", "train.seed=18446744073709551616"),
         "<command line>: 'train': seed must fit torch's 64-bit generator (got 18446744073709551616)"),
    case("warmup-ratio-one", toy("toy-tags", "train.warmup_ratio=1.0"),
         "<command line>: 'train': warmup_ratio must be in [0, 1)"),
    case("batch-size-zero", toy("toy-tags", "train.batch_size=0"), "<command line>: 'train': must be >= 1: batch_size"),
    case("grid-fuse-of-one-intermediate", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: setups lists 'fuse', which makes no cell: for bottleneck and lora, fuse needs at least two "
         "intermediate tasks (intermediate: toy-sentiment)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nsetups: [fuse]\n"}),
    # issue 14: a LoRA Fuse of two intermediates makes Fuse-over-LoRA cells now; one intermediate makes none
    case("grid-lora-fuse", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: method_setups.lora lists 'fuse', which makes no cell: fuse needs at least two intermediate "
         "tasks (intermediate: toy-sentiment)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nmethod_setups:\n  lora: [fuse]\n"}),
    case("grid-multitask-of-one-intermediate", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: setups lists 'multitask', which makes no cell: for bottleneck and lora, multitask needs at least "
         "two intermediate tasks (intermediate: toy-sentiment)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nsetups: [none, multitask]\n"}),
    case("grid-target-setup-left-out", ("grid", "grid.yaml", "-q"),
         "grid.yaml:2: target 'toy-tags' lists setup 'stack', which makes no cell: the grid's setups for its methods "
         "leave it out (bottleneck: none)",
         files={"grid.yaml": "preset: tiny\ntargets: [{task: toy-tags, setups: [stack]}]\nseeds: [0]\n"
                             "intermediate: [toy-sentiment]\nmethods: [bottleneck]\nsetups: [none]\n"}),
    case("grid-target-intermediates-without-stack", ("grid", "grid.yaml", "-q"),
         "grid.yaml:2: target 'toy-tags' narrows its compositions to intermediates, but it runs no stack, fuse or "
         "average setup",
         files={"grid.yaml": "preset: tiny\ntargets: [{task: toy-tags, setups: [none], intermediates: [toy-sentiment]}]"
                             "\nseeds: [0]\nintermediate: [toy-sentiment]\n"}),
    case("grid-target-empty-methods", ("grid", "grid.yaml", "-q"),
         "grid.yaml:2: 'targets[0]': target 'toy-tags' has an empty methods list: omit it for all of the grid's methods",
         files={"grid.yaml": "preset: tiny\ntargets: [{task: toy-tags, methods: []}]\nseeds: [0]\n"
                             "intermediate: [toy-sentiment]\n"}),
    case("grid-target-unknown-split", ("grid", "grid.yaml", "-q"),
         "grid.yaml:2: 'targets[0]': target 'toy-tags': split must be one of: test, train, validation (got 'dev')",
         files={"grid.yaml": "preset: tiny\ntargets: [{task: toy-tags, split: dev}]\nseeds: [0]\n"
                             "intermediate: [toy-sentiment]\n"}),
    case("grid-retrieval-target-with-training-settings", ("grid", "grid.yaml", "-q"),
         "grid.yaml:2: target 'tatoeba' is a retrieval task (evaluated with the intermediate adapters, never trained): "
         "setups does not apply to it",
         files={"grid.yaml": "preset: tiny\ntargets: [{task: tatoeba, setups: [stack]}]\nseeds: [0]\n"
                             "intermediate: [toy-sentiment]\n"}),
    case("grid-full-after-without-full-finetune", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: full_after trains full fine-tunes for the full fine-tune baseline, but no target runs one "
         "(full_finetune is false)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nfull_after: [toy-sentiment]\nfull_finetune: false\n"}),
    case("grid-single-seed-unused", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: single_seed lists 'multitask', which no method of the grid runs",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nsetups: [none]\nsingle_seed: [multitask]\n"}),
    case("grid-method-setups-unknown-method", ("grid", "grid.yaml", "-q"),
         "grid.yaml: method_setups names methods the grid does not train: lora (grid methods: bottleneck)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nmethods: [bottleneck]\nmethod_setups: {lora: [none]}\n"}),
    case("grid-intermediate-splits-unknown-task", ("grid", "grid.yaml", "-q"),
         "grid.yaml: intermediate_splits names tasks that are not intermediate tasks: toy-pair (intermediate: "
         "toy-sentiment)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nintermediate_splits: {toy-pair: validation}\n"}),
    case("grid-qa-stride-not-below-max-length", ("grid", "grid.yaml", "-q"),
         f"grid.yaml:5: train.doc_stride (64) must be smaller than train.max_length (32): {WINDOWS} (QA tasks of the "
         "grid: toy-qa)", files={"grid.yaml": "preset: tiny\ntargets: [{task: toy-qa}]\nseeds: [0]\n"
                                              "intermediate: [toy-sentiment]\ntrain: {max_length: 32}\n"}),
    case("grid-train-settings-typo", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: unknown key 'train.lrr' (valid: <*>), did you mean 'lr'?",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\ntrain:\n  lrr: 0.1\n"}),
    # ---- artifacts: integrity, paths that escape, destinations (issue 13)
    case("train-zoo-is-a-file", ("train", "--task", "toy-sentiment", "--zoo", ZOO, "-q", *FAST),
         "cannot save 'zoo/toy-sentiment-bottleneck': 'zoo' is a file, not a folder", files={ZOO: "not a folder\n"}),
    case("train-runs-dir-is-a-file", on("Stack(sent-a)", "--runs-dir", "runs"),
         "cannot save 'runs/target': 'runs' is a file, not a folder", zoo=("sent-a",), files={"runs": "x\n"}),
    case("train-checkpoints-under-a-file", ("train", "--task", "toy-sentiment", "--zoo", ZOO, "--runs-dir", "runs",
                                            "-q", *FAST),
         "cannot save 'runs/toy-sentiment-bottleneck.checkpoint': 'runs' is a file, not a folder",
         files={"runs": "x\n"}),
    case("evaluate-output-under-a-file", (*EVAL, "--output", "out/scores.json"),
         "cannot write 'out/scores.json': 'out' is a file, not a folder", zoo=("sent-a",), files={"out": "x\n"}),
    case("evaluate-output-is-a-folder", (*EVAL, "--output", "out"), "cannot write 'out': it is a folder, not a file",
         zoo=("sent-a",), files={"out/keep.txt": "x\n"}),
    case("summary-output-under-a-file", ("summary", "r.json", "--output", "out/summary.json"),
         "cannot write 'out/summary.json': 'out' is a file, not a folder", files={"out": "x\n", "r.json": "{}"}),
    case("grid-out-is-a-file", ("grid", "grid.yaml", "--out", "g", "-q"),
         "cannot write 'g/cells.jsonl': 'g' is a file, not a folder", files={"grid.yaml": GRID_YAML, "g": "x\n"}),
    case("report-md-is-a-folder", ("report", "g"), "cannot write 'g/report.md': it is a folder, not a file",
         files={"g/cells.jsonl": '{"id": "i", "kind": "intermediate", "status": "error", "error": "x"}\n',
                "g/report.md/keep.txt": "x\n"}),
    case("export-out-under-a-file", ("export", "sent-a", "--out", "f/peft", "--zoo", ZOO),
         "cannot save 'f/peft': 'f' is a file, not a folder", zoo=("sent-a",), files={"f": "x\n"}),
    case("import-zoo-is-a-file", ("import", "peft", "--name", "x", "--zoo", ZOO),
         "cannot save 'zoo/x': 'zoo' is a file, not a folder", files={ZOO: "x\n", "peft/adapter_config.json": "{}"}),
    case("demo-out-is-a-file", ("demo", "--out", "d", "-q"), "'d' is a file, not a folder; choose another --out",
         files={"d": "x\n"}),
    case("weights-renamed-tensor", EVAL,
         f"'zoo/sent-a/adapter.safetensors' does not fit the model: tensor {SENT_A}.adapter_up.weight is missing "
         f"(shape [128, 8]); unexpected tensor {SENT_A}.adapter_up.weightX",
         zoo=("sent-a",), setup=tensors_edit("adapter.safetensors", rename_tensor)),
    case("weights-wrong-shape", on("Stack(sent-a)"),
         f"'zoo/sent-a/adapter.safetensors' does not fit the model: tensor {SENT_A}.adapter_up.weight has shape "
         "[128, 4], the model's is [128, 8]", zoo=("sent-a",),
         setup=tensors_edit("adapter.safetensors", reshape_tensor)),
    case("weights-extra-tensor", EVAL,
         f"'zoo/sent-a/adapter.safetensors' does not fit the model: unexpected tensor {SENT_A}.adapter_extra.weight",
         zoo=("sent-a",), setup=tensors_edit("adapter.safetensors", extra_tensor)),
    case("head-weights-missing-tensor", EVAL,
         "'zoo/sent-a/model_head.safetensors' does not fit the model: tensor heads.sent-a.4.bias is missing "
         "(shape [2])",
         zoo=("sent-a",), setup=tensors_edit("model_head.safetensors", lambda t: t.pop("heads.sent-a.4.bias"))),
    case("weights-truncated", EVAL,
         "'zoo/sent-a/adapter.safetensors': not a readable safetensors file (Error while deserializing header: "
         "incomplete metadata, file not fully covered)", zoo=("sent-a",),
         setup=then(file_edit("adapter.safetensors", lambda b: b[: len(b) // 2]), rehash("sent-a"))),
    case("weights-garbage-header", EVAL,
         "'zoo/sent-a/model_head.safetensors': not a readable safetensors file (Error while deserializing header: "
         "invalid JSON in header: <*>)", zoo=("sent-a",),
         setup=then(file_edit("model_head.safetensors", lambda b: b[:8] + b"{garbage" + b[16:]), rehash("sent-a"))),
    case("adapter-config-edited", ("zoo", "show", "sent-a", "--zoo", ZOO),
         "'zoo/sent-a': file adapter_config.json was edited or is corrupted (sha256 mismatch; the manifest's hash is "
         "of the file as saved)", zoo=("sent-a",),
         setup=json_edit("adapter_config.json", lambda c: c["config"].update(non_linearity="gelu"))),
    case("head-config-edited", EVAL,
         "'zoo/sent-a': file head_config.json was edited or is corrupted (sha256 mismatch; the manifest's hash is "
         "of the file as saved)", zoo=("sent-a",),
         setup=json_edit("head_config.json", lambda c: c["config"].update(activation_function="relu"))),
    case("adapter-config-disagrees-with-method", on("Stack(sent-a)"),
         "zoo/sent-a/adapter_config.json: 'reduction_factor' is 8, but the manifest's bottleneck settings give 16: "
         "the file does not match the artifact", zoo=("sent-a",),
         setup=then(json_edit("adapter_config.json", lambda c: c["config"].update(reduction_factor=8)),
                    rehash("sent-a"))),
    case("head-config-disagrees-with-task", EVAL,
         "zoo/sent-a/head_config.json: a 'classification' head, but the manifest's task 'toy-tags' (tagging) needs "
         "a 'tagging' head", zoo=("sent-a",), setup=manifest_edit("sent-a", other_task)),
    case("head-labels-disagree-with-task", EVAL,
         "zoo/sent-a/head_config.json: the head's labels (negative, positive) are not those of the manifest's task "
         "'toy-sentiment' (bad, good)", zoo=("sent-a",), setup=manifest_edit("sent-a", other_labels)),
    case("manifest-member-traversal", ("zoo", "show", "sent-a", "--zoo", ZOO),
         f"zoo/sent-a/manifest.json: invalid member name '../x' in 'composition.members[0]': {NAME_RULE}",
         zoo=("sent-a",), setup=manifest_edit("sent-a", lambda m: m.update(
             composition={"block": "stack", "members": ["../x"], "semantics": "stack", "setup": "-"}))),
    case("manifest-task-name-absolute", EVAL,
         f"zoo/sent-a/manifest.json: invalid task name '/tmp/x' in 'tasks[0].name': {NAME_RULE}",
         zoo=("sent-a",), setup=manifest_edit("sent-a", task_field("name", "/tmp/x"))),
    case("manifest-head-name-traversal", EVAL,
         "zoo/sent-a/manifest.json: invalid head name '../x' in 'tasks[0].head' (expected 'sent-a')",
         zoo=("sent-a",), setup=manifest_edit("sent-a", task_field("head", "../x"))),
    case("weights-symlink-to-outside", EVAL,
         "'zoo/sent-a': adapter.safetensors is a symbolic link (to '../../outside/adapter.safetensors'); an artifact "
         "holds only real files and folders: copy the target in instead", zoo=("sent-a",),
         setup=link_outside("zoo/sent-a/adapter.safetensors", "outside/adapter.safetensors",
                            "../../outside/adapter.safetensors")),
    case("evaluations-symlink-to-outside", EVAL,
         "'zoo/sent-a': evaluations is a symbolic link (to '../../outside/scores'); an artifact holds only real files "
         "and folders: copy the target in instead", zoo=("sent-a",),
         setup=link_outside("zoo/sent-a/evaluations", "outside/scores", "../../outside/scores", mkdir=True)),
    case("zoo-entry-symlink-to-outside", EVAL,
         "'zoo/sent-a' is a symbolic link (to '../outside/sent-a'); a zoo entry must be a real folder inside the zoo: "
         "copy it in instead", zoo=("sent-a",),
         setup=link_outside("zoo/sent-a", "outside/sent-a", "../outside/sent-a")),
    # ---- health: per-family grid training settings, learning records (issue 13)
    case("grid-family-settings-typo", ("grid", "grid.yaml", "-q"),
         "grid.yaml:4: unknown key 'train_by_format.tagging.lrr' (valid: <*>), did you mean 'lr'?",
         files={"grid.yaml": "intermediate: [toy-sentiment]\ntargets: [{task: toy-tags}]\ntrain_by_format:\n"
                             "  tagging: {lrr: 1e-3}\n"}),
    case("grid-unknown-family", ("grid", "grid.yaml", "-q"),
         "grid.yaml:4: 'train_by_format.tags' must be one of: classification, multiple_choice, qa, retrieval, tagging "
         "(got 'tags')",
         files={"grid.yaml": "intermediate: [toy-sentiment]\ntargets: [{task: toy-tags}]\ntrain_by_format:\n"
                             "  tags: {lr: 1e-3}\n"}),
    case("grid-family-retrieval", ("grid", "grid.yaml", "-q"),
         "grid.yaml: train_by_format / full_train_by_format: retrieval tasks are not trained (valid: classification, "
         "tagging, qa, multiple_choice)",
         files={"grid.yaml": "intermediate: [toy-sentiment]\ntargets: [{task: toy-tags}]\nfull_train_by_format:\n"
                             "  retrieval: {lr: 1e-3}\n"}),
    case("grid-multitask-families-differ", ("grid", "grid.yaml", "-q"),  # the cpu-small preset: tagging at 5e-3
         "grid.yaml:1: the multitask adapter trains tasks of families whose training settings differ (lr: "
         "classification 0.001, tagging 0.005): set lr in multitask_train",
         files={"grid.yaml": "intermediate: [toy-sentiment, toy-tags]\ntargets: [{task: toy-pair}]\n"}),
    case("report-bad-learning-record", ("report", "grids/g"),
         "grids/g/cells.jsonl:1: 'learning' must be null or an object with a 'verdict' of learned, not-learned, "
         "unknown, got {\"verdict\": \"maybe\"}",
         files={"grids/g/cells.jsonl": json.dumps({"id": "intermediate/bottleneck/x", "kind": "intermediate",
                                                   "status": "ok", "learning": {"verdict": "maybe"}}) + "\n"}),
    # ---- interrupts, leftovers and concurrent runs (issue 13)
    case("train-while-the-same-run-trains", ("train", "--task", "toy-sentiment", "--name", "held", "--zoo", ZOO, "-q",
                                             *FAST),
         f"run 'held' is already being trained by process {os.getpid()} (zoo/.held.lock is locked): wait for it to "
         "finish, or stop it first", setup=hold_lock("zoo/held")),
    case("train-into-another-zoo-while-its-checkpoint-folder-is-in-use",
         ("train", "--task", "toy-sentiment", "--name", "held", "--zoo", "zoo2", "-q", *FAST),
         f"run 'held' is already being trained by process {os.getpid()} (runs/.held.lock is locked): wait for it to "
         "finish, or stop it first", setup=hold_lock("runs/held")),
    case("grid-while-another-grid-runs-in-its-folder", ("grid", "grid.yaml", "--out", "g", "-q"),
         f"grid folder 'g' is already being run by process {os.getpid()} (.g.lock is locked): wait for it to finish, "
         "or stop it first", setup=hold_lock("g"),
         files={"grid.yaml": "preset: tiny\nintermediate: [toy-sentiment]\ntargets: [{task: toy-tags}]\nseeds: [0]\n"}),
    case("resume-after-a-stack-member-was-replaced", on("Stack(sent-a)", "--resume"),
         "runs/target.checkpoint was written with other inputs: zoo member 'sent-a' changed (adapter.safetensors: "
         "sha256 <*> -> <*>) since; resume needs the same ones: put them back, or remove the folder to start over",
         zoo=("sent-a",), setup=stack_stopped_then_member_replaced),
    # ---- review r3 (issue 13): inputs that escaped as tracebacks
    case("copa-label-non-ascii-digit", train("copa"), f"{COPA}:1: label '\u00b2' is not one of 0, 1",
         files={COPA: '{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": "\u00b2"}\n'}),
    case("tatoeba-labels-non-ascii-digit", retrieval("tatoeba", "de"),
         "data/labels/tatoeba/test-de.tsv:1: '\u00b2' is not a line index of data/target/tatoeba/de-en.en (0-0)",
         files={"data/target/tatoeba/de-en.de": "Hallo.\n", "data/target/tatoeba/de-en.en": "Hello.\n",
                "data/labels/tatoeba/test-de.tsv": "\u00b2\n"}),
    case("squad-blank-answer-then-a-question-that-is-no-object", train("squad"),
         f"{SQUAD}: question 'q0': answer with empty text (no gold answer; allow_blank_answers=True reads it as "
         "unanswered)",
         files={SQUAD: json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [
             {"id": "q0", "question": "q", "answers": [{"text": "", "answer_start": 0}]}, "not a question"]}]}]})}),
    # ---- review r2 of issue 13: summary of a report without a score per language
    case("summary-report-whose-scores-are-a-list", ("summary", "x.json"),
         "x.json: not a stepstone evaluation report ('scores' must be an object with one entry per language, got [])",
         files={"x.json": '{"task": "xnli", "metric": "accuracy", "scores": []}'}),
    case("summary-report-without-scores", ("summary", "x.json"),
         "x.json: not a stepstone evaluation report ('scores' must be an object with one entry per language, got {})",
         files={"x.json": '{"task": "xnli", "metric": "accuracy", "scores": {}}'}),
    # ---- review r1 of issue 13: manifest fields loaders read, a folder where a lock file goes
    case("manifest-task-labels-not-strings", EVAL,
         "zoo/sent-a/manifest.json: 'tasks[0].labels' must be a list of strings, got 5",
         zoo=("sent-a",), setup=manifest_edit("sent-a", task_field("labels", 5))),
    case("manifest-fuse-block-under-adapter-mode", ("zoo", "show", "sent-a", "--zoo", ZOO),
         "zoo/sent-a/manifest.json: 'composition.block' is 'fuse', but 'mode' is 'adapter'",
         zoo=("sent-a",), setup=manifest_edit("sent-a", lambda m: m.update(
             composition={"block": "fuse", "members": ["sent-b"], "semantics": "fusion", "setup": "-"}))),
    case("train-with-a-folder-where-its-lock-file-goes", ("train", "--task", "toy-sentiment", "--name", "held",
                                                          "--zoo", ZOO, "-q", *FAST),
         "cannot lock 'zoo/.held.lock': Is a directory (EISDIR)",
         setup=lambda root: (root / ZOO / ".held.lock").mkdir(parents=True)),
    # ---- average + merge (issue 14)
    case("average-weight-missing", on("Average(sent-a=0.7, sent-b)"),
         f"bad composition 'Average(sent-a=0.7, sent-b)': 'sent-b' has no weight; {WEIGHTS_RULE}"),
    case("average-weight-not-a-number", on("Average(sent-a=x, sent-b=1)"),
         f"bad composition 'Average(sent-a=x, sent-b=1)': weight 'x' of 'sent-a' is not a number; {WEIGHTS_RULE}"),
    case("average-weight-not-positive", on("Average(sent-a=-1, sent-b=1)"),
         f"bad composition 'Average(sent-a=-1, sent-b=1)': weight -1.0 of 'sent-a' is not a finite number > 0; "
         f"{WEIGHTS_RULE}"),
    case("average-of-one", on("Average(sent-a)"), "bad composition 'Average(sent-a)': Average needs at least two members"),
    case("stack-with-weights", on("Stack(sent-a=1)"), "bad composition 'Stack(sent-a=1)': Stack takes no weights "
                                                      "(only Average does)"),
    case("average-of-bottleneck-and-lora", on("Average(sent-a, sent-b)"),
         "Average members and the target must all be bottleneck or all LoRA adapters (bottleneck: sent-a, target; "
         "LoRA: sent-b): the adapters library's Average mixes one kind of layer state",
         zoo=TRAINED, setup=manifest_edit("sent-b", lora_method)),
    case("merge-of-one", ("zoo", "merge", "m", "sent-a", "--zoo", ZOO), "zoo merge needs at least two members "
                                                                        "(got 1: sent-a)", zoo=("sent-a",)),
    case("merge-unknown-member", ("zoo", "merge", "m", "sent-a", "ghost", "--zoo", ZOO),
         "no zoo entry 'ghost' in zoo (entries: sent-a)", zoo=("sent-a",)),
    case("merge-name-taken", ("zoo", "merge", "sent-b", "sent-a", "ghost", "--zoo", ZOO),
         "'zoo/sent-b' already exists; pick another name or remove it first", zoo=TRAINED),
    case("merge-name-traversal", ("zoo", "merge", "../m", "sent-a", "sent-b", "--zoo", ZOO),
         f"invalid zoo entry name '../m': {NAME_RULE}", zoo=TRAINED),
    case("merge-weights-not-numbers", ("zoo", "merge", "m", "sent-a", "sent-b", "--weights", "0.5,x", "--zoo", ZOO),
         "bad --weights '0.5,x': 'x' is not a number (give one number per member, comma-separated)", zoo=TRAINED),
    case("merge-weights-count", ("zoo", "merge", "m", "sent-a", "sent-b", "--weights", "1", "--zoo", ZOO),
         f"zoo merge: 2 members but 1 weights; {WEIGHTS_RULE}", zoo=TRAINED),
    case("merge-different-methods", ("zoo", "merge", "m", "sent-a", "sent-b", "--zoo", ZOO),
         "zoo merge: 'sent-b' is a lora adapter, 'sent-a' a bottleneck adapter: members must share the method",
         zoo=TRAINED, setup=manifest_edit("sent-b", lora_method)),
    case("merge-different-settings", ("zoo", "merge", "m", "sent-a", "sent-b", "--zoo", ZOO),
         "zoo merge: 'sent-b' has bottleneck setting reduction_factor=8, 'sent-a' has reduction_factor=16: members "
         "must share the method's settings",
         zoo=TRAINED, setup=manifest_edit("sent-b", lambda m: m["method"]["settings"].update(reduction_factor=8))),
    case("merge-different-backbones", ("zoo", "merge", "m", "sent-a", "sent-b", "--zoo", ZOO),
         "zoo merge: 'sent-b' was trained on backbone 'xlm-roberta-base' (fingerprint 0123456789abcdef), 'sent-a' "
         "on 'tiny' (fingerprint <*>): members must share the backbone",
         zoo=TRAINED, setup=manifest_edit("sent-b", other_backbone)),
    # ---- fuse over lora (issue 14): Fuse of LoRA members trains now; mixed members and members updating
    # different modules are refused (the mixed-member text is fuse-with-lora-member's, above, unchanged)
    case("fuse-lora-members-updating-different-modules", on("Fuse(sent-a, sent-b)", "--method", "lora"),
         "LoRA members of one Fuse must update the same modules (sent-a: q, v; sent-b: intermediate)",
         zoo=TRAINED, setup=lambda root: (manifest_edit("sent-a", lora_method)(root),
                                          manifest_edit("sent-b", lora_method_on("intermediate"))(root))),
    case("fuse-mixed-members-under-a-lora-target", on("Fuse(sent-a, sent-b)", "--method", "lora"),
         "Fuse supports bottleneck members only (AdapterFusion mixes bottleneck outputs); LoRA member(s): sent-a. "
         "Use Stack for LoRA adapters", zoo=TRAINED, setup=manifest_edit("sent-a", lora_method)),
    case("manifest-lora-fusion-mode-with-adapterfusion-semantics", ("zoo", "show", "sent-a", "--zoo", ZOO),
         "zoo/sent-a/manifest.json: 'composition.semantics' is 'fusion', but 'mode' is 'lora-fusion'",
         zoo=("sent-a",), setup=manifest_edit("sent-a", lambda m: m.update(mode="lora-fusion", composition={
             "block": "fuse", "members": ["sent-b"], "semantics": "fusion", "setup": "-"}))),
    # ---- new methods (issue 14)
    case("fuse-houlsby-with-a-bottleneck-member", on("Fuse(sent-a, sent-b)"),
         "Fuse members must have their bottlenecks at the same places, AdapterFusion mixes their outputs place by "
         "place (sent-a: after the FFN; sent-b: after attention, after the FFN); fuse adapters of one method",
         zoo=TRAINED, setup=manifest_edit("sent-b", houlsby_method)),
    case("stack-ia3-member-under-a-lora-target", on("Stack(sent-b)", "--method", "lora"),
         "a Stack cannot hold (IA)^3 and LoRA adapters together: both live in the same linear layers, where the "
         "adapters library chains a Stack's branches (a LoRA branch would act on the (IA)^3 scaling vector, not on "
         "the layer's input); (IA)^3: sent-b; LoRA: target", zoo=("sent-b",), setup=manifest_edit("sent-b", ia3_method)),
    case("houlsby-reduction-factor-over-hidden-size",
         toy("toy-tags", "--method", "houlsby", "method.houlsby.reduction_factor=129"),
         "method.houlsby.reduction_factor is 129, larger than the backbone's hidden size 128: both bottlenecks (hidden "
         "size / reduction factor) would have no units; use a reduction factor of at most 128"),
    # ---- rank (issue 15): every check comes before a model is loaded or a feature is cached
    case("rank-unknown-target", rank_cmd("toy-tagz"),
         f"unknown task 'toy-tagz' (valid: {ALL_TASKS}), did you mean 'toy-tags'?", zoo=("sent-a",)),
    case("rank-retrieval-target", rank_cmd("tatoeba"),
         "task 'tatoeba' is a retrieval task: it has no labels and trains nothing, so there is nothing to rank "
         "adapters for (rank a trained target: <*>)", zoo=("sent-a",)),
    case("rank-unknown-candidate", rank_cmd("toy-tags", "--candidates", "sent-a,ghost"),
         "no zoo entry 'ghost' in zoo (entries: sent-a)", zoo=("sent-a",)),
    case("rank-only-none", rank_cmd("toy-tags", "--candidates", "none"),
         "no candidates besides 'none' (the bare backbone, always ranked): name zoo adapters", zoo=("sent-a",)),
    case("rank-empty-zoo", rank_cmd("toy-tags"), "no adapters to rank in the zoo zoo (train some, or pass --zoo)"),
    case("rank-candidates-of-two-backbones", rank_cmd("toy-tags", "--candidates", "sent-a,sent-b"),
         "the candidates were trained on different backbones (tiny (<*>): sent-a; xlm-roberta-base (0123456789ab): "
         "sent-b): name candidates of one backbone", zoo=TRAINED, setup=manifest_edit("sent-b", other_backbone)),
    case("rank-zoo-of-two-backbones", rank_cmd("toy-tags"),
         "the candidates were trained on different backbones (tiny (<*>): sent-a; xlm-roberta-base (0123456789ab): "
         "sent-b): pass --backbone, or --candidates of one backbone", zoo=TRAINED,
         setup=manifest_edit("sent-b", other_backbone)),
    case("rank-candidate-on-another-backbone", rank_cmd("toy-tags", "--candidates", "sent-b", "--backbone", "tiny"),
         "candidate 'sent-b' was trained on backbone 'xlm-roberta-base' (fingerprint 0123456789abcdef), not on 'tiny' "
         "(fingerprint <*>): rank candidates of one backbone", zoo=TRAINED, setup=manifest_edit("sent-b", other_backbone)),
    case("rank-more-examples-than-data", rank_cmd("toy-tags", "--examples", "100000"),
         "asked for 100000 examples, but task 'toy-tags' has 400 English train examples: use 400 or fewer",
         zoo=("sent-a",)),
    case("rank-zero-examples", rank_cmd("toy-tags", "--examples", "0"), "examples must be >= 1 (got 0)",
         zoo=("sent-a",)),
    case("rank-zero-steps", rank_cmd("toy-tags", "--steps", "0"), "steps must be >= 1 (got 0)", zoo=("sent-a",)),
    case("rank-unknown-estimator", rank_cmd("toy-tags", "--estimator", "logme,semd"),
         "unknown estimator 'semd' (valid: logme, proxy, semb), did you mean 'semb'?", zoo=("sent-a",)),
    case("rank-test-split", rank_cmd("toy-tags", "--train-split", "test"),
         "train_split must be train or validation (got 'test')", zoo=("sent-a",)),
    case("rank-proxy-lr-not-positive", rank_cmd("toy-tags", "--lr", "0"), "proxy settings: lr must be > 0",
         zoo=("sent-a",)),
    case("rank-max-length-over-the-backbone", rank_cmd("toy-tags", "--max-length", "600"),
         "train.max_length is 600, but backbone 'tiny' takes at most 512 tokens (max_position_embeddings 514, "
         "positions start at 2): set train.max_length to 512 or less", zoo=("sent-a",)),
    case("rank-unknown-method", rank_cmd("toy-tags", "--method", "lorra"),
         "unknown method 'lorra' (valid: bottleneck, full, houlsby, ia3, lora), did you mean 'lora'?", zoo=("sent-a",)),
    case("rank-full-method", rank_cmd("toy-tags", "--method", "full"),
         "method 'full' trains no adapter to stack on a candidate (proxy's target adapter: bottleneck, houlsby, ia3, "
         "lora)", zoo=("sent-a",)),
    case("rank-local-data-missing", rank_cmd("udpos", "--data-dir", "data"),
         "no train file for language 'en' under data (looked for: target/udpos/train-en.tsv, "
         "target/udpos_conllu/en_gsd/en_gsd-ud-train.conllu)", zoo=("sent-a",)),
    # ---- grid rank (issue 15)
    case("grid-rank-unknown-estimator", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: 'rank[1]' must be one of: logme, proxy, semb (got 'logmee')",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nrank: [semb, logmee]\n"}),
    case("grid-stack-pick-not-ranked", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: stack_pick 'proxy' is not dev or an estimator rank runs (valid: dev, logme, semb)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nrank: [logme, semb]\nstack_pick: proxy\n"}),
    case("grid-stack-pick-with-stack-all-seeds", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: stack_pick picks the stack that gets every seed, but stack_all_seeds is true (every stack gets "
         "every seed)", files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nrank: [logme]\nstack_pick: logme\n"
                                                   "stack_all_seeds: true\n"}),
    case("grid-rank-without-stack", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: rank scores the intermediate adapters of a trained target's stack cells, but no target runs a "
         "stack setup", files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nrank: [logme]\nsetups: [none]\n"}),
    case("grid-rank-examples-below-1", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: rank_examples must be at least 1 (got 0)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nrank: [logme]\nrank_examples: 0\n"}),
    case("grid-rank-examples-without-rank", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: rank_examples is set, but rank lists no estimators",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nrank_examples: 100\n"}),
    case("grid-rank-steps-without-proxy", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: rank_steps are proxy's training steps, but rank does not run proxy (rank: logme)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nrank: [logme]\nrank_steps: 10\n"}),
    # ---- languages (issue 16)
    case("summary-unknown-language-grouping", ("summary", "r.json", "--by", "region"),
         "unknown language grouping 'region' (valid: tier, family, script)",
         files={"r.json": '{"task": "xnli", "metric": "accuracy", "scores": {"en": {"accuracy": 1.0}}}'}),
    # ---- sequential chains (issue 16): init_from of an adapter run; every check comes before the backbone loads
    case("chain-from-an-adapter-of-another-method", toy("toy-pair", "--init-from", "sent-a", "--method", "bottleneck"),
         "init_from 'zoo/sent-a' is a lora adapter, but this run trains bottleneck: a chain continues an adapter with "
         "its own method (leave --method out to take it)", zoo=("sent-a",), setup=manifest_edit("sent-a", lora_method)),
    case("chain-from-an-adapter-with-other-settings",
         toy("toy-pair", "--init-from", "sent-a", "method.bottleneck.reduction_factor=8"),
         "init_from 'zoo/sent-a' is a bottleneck adapter with other settings (method.bottleneck.reduction_factor: 16 "
         "there, 8 here): a chain continues an adapter with the settings it was trained with (leave the method "
         "settings out to take them)", zoo=("sent-a",)),
    case("chain-from-another-backbone", toy("toy-pair", "--init-from", "sent-a", "--backbone", "tiny"),
         "backbone 'tiny' is not the one init_from 'zoo/sent-a' was trained on ('xlm-roberta-base' (fingerprint "
         "0123456789abcdef)): leave --backbone out to train on its backbone", zoo=("sent-a",),
         setup=manifest_edit("sent-a", other_backbone)),
    case("chain-from-a-missing-backbone-folder", toy("toy-pair", "--init-from", "sent-a"),
         f"init_from 'zoo/sent-a' was trained on the backbone folder '{ELSEWHERE}', which is not there: pass "
         "--backbone with where it is now (its content is checked)", zoo=("sent-a",),
         setup=manifest_edit("sent-a", folder_backbone)),
    case("chain-from-a-full-fine-tune-run", toy("toy-pair", "--init-from", "sent-a", "--method", "bottleneck"),
         "init_from 'zoo/sent-a' is a full fine-tune run, not an adapter: an adapter run starts from a zoo adapter of "
         "its method (bottleneck)", zoo=("sent-a",),
         setup=manifest_edit("sent-a", lambda m: m.update(method={"kind": "full", "settings": {}}, mode="full"))),
    case("chain-full-fine-tune-from-an-adapter", toy("toy-pair", "--init-from", "sent-a", "--full-finetune"),
         "init_from 'zoo/sent-a' is not a full fine-tune run (it is a bottleneck adapter): a full fine-tune starts "
         "from a full fine-tune run's encoder", zoo=("sent-a",)),
    case("chain-from-an-unknown-name", toy("toy-pair", "--init-from", "sent-c"),
         "init_from 'sent-c' is neither a folder nor a zoo entry in zoo (entries: sent-a, sent-b), did you mean "
         "'sent-b'?", zoo=TRAINED),
    case("chain-with-a-composition", on("Stack(sent-a)", "--init-from", "sent-b"),
         "<command line>: init_from and compose exclude each other: a target adapter on a composition starts fresh; "
         "train the chain first (init_from), then compose the result", zoo=TRAINED),
    # ---- perturb and data-file (issue 16): specs and lexicons are checked before the run is even looked up
    case("perturb-unknown-kind", evaluate_cmd("--perturb", "tyop:0.1"),
         "perturbation 'tyop:0.1': unknown perturbation 'tyop' (valid: codeswitch, dropout, typo), did you mean "
         "'typo'?"),
    case("perturb-rate-not-a-number", evaluate_cmd("--perturb", "typo:abc"),
         "perturbation 'typo:abc': rate 'abc' is not a number (RATE from 0 to 1)"),
    case("perturb-missing-rate", evaluate_cmd("--perturb", "dropout"),
         "perturbation 'dropout': expected dropout:RATE (RATE from 0 to 1)"),
    case("perturb-extra-field", evaluate_cmd("--perturb", "typo:0.1:3"),
         "perturbation 'typo:0.1:3': expected typo:RATE (RATE from 0 to 1), found 3 fields"),
    case("perturb-rate-above-1", evaluate_cmd("--perturb", "typo:1.5"), "perturbation 'typo:1.5': rate 1.5 is outside 0-1"),
    case("perturb-rate-negative", evaluate_cmd("--perturb", "dropout:-0.1"),
         "perturbation 'dropout:-0.1': rate -0.1 is outside 0-1"),
    case("perturb-codeswitch-without-lexicon", evaluate_cmd("--perturb", "codeswitch:0.3"),
         "perturbation 'codeswitch:0.3': expected codeswitch:LEXICON:RATE (RATE from 0 to 1)"),
    case("perturb-lexicon-missing", evaluate_cmd("--perturb", "codeswitch:de-en.txt:0.3"),
         "de-en.txt: lexicon file not found"),
    case("perturb-lexicon-a-folder", evaluate_cmd("--perturb", "codeswitch:lex:0.3"), "lex: lexicon is not a file",
         files={"lex/x.txt": "a b\n"}),
    case("perturb-lexicon-empty", evaluate_cmd("--perturb", "codeswitch:de-en.txt:0.3"),
         "de-en.txt: empty lexicon (expected 'source target' lines)", files={"de-en.txt": "\n  \n"}),
    case("perturb-lexicon-not-utf8", evaluate_cmd("--perturb", "codeswitch:de-en.txt:0.3"),
         "de-en.txt:2: not valid UTF-8", files={"de-en.txt": b"cat Katze\nsch\xf6n beautiful\n"}),
    case("perturb-lexicon-one-column", evaluate_cmd("--perturb", "codeswitch:de-en.txt:0.3"),
         "de-en.txt:3: expected 2 columns (source target) in a lexicon line, found 1",
         files={"de-en.txt": "cat Katze\n\ndog\n"}),
    case("perturb-lexicon-three-columns", evaluate_cmd("--perturb", "codeswitch:de-en.txt:0.3"),
         "de-en.txt:1: expected 2 columns (source target) in a lexicon line, found 3",
         files={"de-en.txt": "new york New-York\n"}),
    case("perturb-retrieval-task", evaluate_cmd("--task", "tatoeba", "--perturb", "typo:0.1"),
         "--perturb applies to trained tasks: 'tatoeba' is a retrieval task, whose sentences are matched, not "
         "labelled", zoo=("sent-a",)),
    case("perturb-with-data-file", evaluate_cmd("--perturb", "typo:0.1", "--data-file", "x.tsv"),
         "--perturb and --data-file are separate evaluations (robustness on the task's own languages, domain shift "
         "on a file): run one, then the other", zoo=("sent-a",)),
    case("data-file-generated-task", evaluate_cmd("--data-file", "x.tsv"),
         "--data-file needs a task with a local file format: 'toy-sentiment' is read from generated (stepstone.toy)",
         zoo=("sent-a",), files={"x.tsv": "a\tpositive\n"}),
    case("data-file-retrieval-task", evaluate_cmd("--task", "tatoeba", "--data-file", "x.tsv"),
         "--data-file needs a task with a local file format: 'tatoeba' is a retrieval task", zoo=("sent-a",),
         files={"x.tsv": "a\tb\n"}),
    case("data-file-missing", evaluate_cmd("--data-file", "news.tsv"), "news.tsv: file not found", zoo=("sent-a",),
         setup=manifest_edit("sent-a", panx_head)),
    case("data-file-empty", evaluate_cmd("--data-file", "news.tsv"), "news.tsv: empty file", zoo=("sent-a",),
         files={"news.tsv": "\n"}, setup=manifest_edit("sent-a", panx_head)),
    case("data-file-wrong-format", evaluate_cmd("--data-file", "news.tsv"),
         "news.tsv:1: expected 2 tab-separated columns, found 10", zoo=("sent-a",),
         files={"news.tsv": "1\tBerlin\t_\tPROPN\t_\t_\t0\troot\t_\t_\n"},
         setup=manifest_edit("sent-a", panx_head)),
    case("data-file-unknown-label", evaluate_cmd("--data-file", "news.tsv"),
         "news.tsv:2: label 'B-CITY' is not a label of task 'panx' (valid: B-LOC, B-ORG, B-PER, I-LOC, I-ORG, I-PER, "
         "O)", zoo=("sent-a",), files={"news.tsv": "in\tO\nBerlin\tB-CITY\n"},
         setup=manifest_edit("sent-a", panx_head)),
    case("data-file-without-labels", evaluate_cmd("--data-file", "news.tsv"),
         "news.tsv:1: expected 2 tab-separated columns, found 1; --data-file needs gold labels", zoo=("sent-a",),
         files={"news.tsv": "in\nBerlin\n"}, setup=manifest_edit("sent-a", panx_head)),
    # ---- grid axes (issue 16): chains, sizes, backbones, perturbed and out-of-domain evaluations of a grid
    case("grid-chain-of-one-task", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: a sequential chain needs at least two tasks (got toy-pair); a single intermediate task is the "
         "stack setup", files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nsequential: [[toy-pair]]\n"}),
    case("grid-chain-trains-a-task-twice", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: sequential chain ['toy-pair', 'toy-sentiment', 'toy-pair'] trains a task twice",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\n"
                "sequential: [[toy-pair, toy-sentiment, toy-pair]]\n"}),
    case("grid-chain-through-a-retrieval-task", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: sequential chain ['toy-pair', 'tatoeba']: tatoeba is a retrieval task, which is not trained",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nsequential: [[toy-pair, tatoeba]]\n"}),
    case("grid-size-below-one", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: intermediate_sizes must be at least 1 (got 0)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nintermediate_sizes: [0]\n"}),
    case("grid-size-of-a-task-not-intermediate", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: intermediate_sizes names 'toy-pair', which is not an intermediate task (intermediate: "
         "toy-sentiment)", files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\n"
                                  "intermediate_sizes: {toy-pair: [8]}\n"}),
    case("grid-size-larger-than-the-data", ("grid", "grid.yaml", "-q"),
         "grid.yaml:6: intermediate_sizes: 8 examples of 'sst2' asked for, but its train data has 3",
         files={"grid.yaml": GRID + "intermediate: [sst2]\ndata_dir: data\nintermediate_sizes: [2, 8]\n",
                "data/intermediate/sst2/train.tsv": "sentence\tlabel\ngood\t1\nbad\t0\nfine\t1\n"}),
    case("grid-backbones-with-one-name", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: backbones share a name (tiny): their cells and zoo entries would collide; give each backbone "
         "a distinct folder or hub id",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nbackbones: [{name: tiny}, {name: tiny}]\n"}),
    case("grid-malformed-perturbation", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: perturbation 'typo:abc': rate 'abc' is not a number (RATE from 0 to 1)",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nperturb: [typo:abc]\n"}),
    case("grid-perturb-seed-without-perturb", ("grid", "grid.yaml", "-q"),
         "grid.yaml:5: perturb_seed is set, but perturb lists no perturbation",
         files={"grid.yaml": GRID + "intermediate: [toy-sentiment]\nperturb_seed: 2\n"}),
    case("grid-missing-data-file", ("grid", "grid.yaml", "-q"),
         "grid.yaml:2: target 'toy-tags': data file 'ood.tsv' not found",
         files={"grid.yaml": GRID.replace("{task: toy-tags}", "{task: toy-tags, data_files: [ood.tsv]}")
                + "intermediate: [toy-sentiment]\n"}),
    case("grid-data-file-in-the-wrong-format", ("grid", "grid.yaml", "-q"),
         "grid.yaml:2: target 'panx': ood.tsv:1: expected 2 tab-separated columns, found 1; --data-file needs gold "
         "labels", files={"grid.yaml": GRID.replace("{task: toy-tags}", "{task: panx, data_files: [ood.tsv]}")
                          + "intermediate: [toy-sentiment]\n", "ood.tsv": "Anna\nBerlin\n"}),
]


# --------------------------------------------------------------------------------------------- test
@pytest.fixture(scope="module", autouse=True)
def _release_held_locks():
    """The locks `hold_lock` cases took are released when the module ends (not by the garbage collector at
    interpreter exit, when `os` is gone and the release fails noisily)."""
    yield
    while HELD:
        HELD.pop().close()


@pytest.fixture(scope="module")
def trained_zoo(tmp_path_factory) -> Path:
    """Two toy-sentiment bottleneck adapters on the tiny backbone (the second a copy of the first)."""
    zoo = tmp_path_factory.mktemp("trained") / "zoo"
    result = run("train", "--task", "toy-sentiment", "--name", TRAINED[0], "--zoo", zoo, "-q", *FAST)
    assert result.exit_code == 0, result.output
    shutil.copytree(zoo / TRAINED[0], zoo / TRAINED[1])
    manifest = json.loads((zoo / TRAINED[1] / "manifest.json").read_text())
    task = {**manifest["task"], "head": TRAINED[1]}  # its head is named like the entry, as every writer names it
    (zoo / TRAINED[1] / "manifest.json").write_text(json.dumps({**manifest, "name": TRAINED[1], "task": task,
                                                                "tasks": [task]}))  # a zoo entry's own name
    return zoo


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` (hidden ones too) -> 'dir' or the sha256 of the file's bytes."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


def pattern(message: str) -> re.Pattern:
    return re.compile(re.escape("error: " + message).replace(re.escape("<*>"), ".*"))


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(bad: Case, tmp_path, monkeypatch, request):
    trained = request.getfixturevalue("trained_zoo") if bad.zoo else None  # trains on first use only
    monkeypatch.chdir(tmp_path)
    for relative, content in bad.files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for name in bad.zoo:
        shutil.copytree(trained / name, tmp_path / ZOO / name)
    if bad.setup is not None:
        bad.setup(tmp_path)
    before = snapshot(tmp_path)

    result = run(*bad.argv)

    lines = result.stderr.splitlines()
    print(f"\nCATALOGUE\t{request.node.callspec.id}\t{result.stderr.strip()}")
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert pattern(bad.message).fullmatch(lines[0]), lines[0]
    assert result.stdout == ""
    assert snapshot(tmp_path) == before
