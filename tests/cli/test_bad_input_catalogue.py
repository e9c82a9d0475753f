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


# ------------------------------------------------------------- held locks, stopped runs (issue 13)
HELD = []  # locks held by this (test) process for the rest of the session: the refused CLI runs here too


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
         "run.yaml:3: 'method.kind' must be one of: bottleneck, full, lora (got 'lorra')",
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
    case("unknown-task", ("train", "--task", "xnlii", "--zoo", ZOO), f"unknown task 'xnlii' (valid: {ALL_TASKS})"),
    case("unknown-method", ("train", "--task", "toy-tags", "--method", "adapter", "--zoo", ZOO),
         "<command line>: 'method.kind' must be one of: bottleneck, full, lora (got 'adapter')"),
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
         "zoo/sent-a/manifest.json: format version 99 is newer than this stepstone understands (1); "
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
         f"grid.yaml:2: unknown task 'toy-tagz' in 'targets[0].task' (valid: {ALL_TASKS})",
         files={"grid.yaml": "intermediate: [toy-sentiment]\ntargets: [{task: toy-tagz}]\nseeds: [0]\n"}),
    case("report-not-a-grid-folder", ("report", "grids/none"),
         "grids/none/cells.jsonl: not found; is 'grids/none' a grid folder? Run the grid first",
         files={"grids/none/x.txt": "x"}),
    case("summary-not-a-report", ("summary", "x.json"),
         "x.json: not a stepstone evaluation report (missing key 'metric')", files={"x.json": '{"task": "xnli"}'}),
    case("evaluate-folder-without-manifest", ("evaluate", "runs/empty", "--zoo", ZOO),
         "'runs/empty' is not a stepstone artifact: manifest.json is missing", files={"runs/empty/notes.txt": "x"}),
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
]


# --------------------------------------------------------------------------------------------- test
@pytest.fixture(scope="module")
def trained_zoo(tmp_path_factory) -> Path:
    """Two toy-sentiment bottleneck adapters on the tiny backbone (the second a copy of the first)."""
    zoo = tmp_path_factory.mktemp("trained") / "zoo"
    result = run("train", "--task", "toy-sentiment", "--name", TRAINED[0], "--zoo", zoo, "-q", *FAST)
    assert result.exit_code == 0, result.output
    shutil.copytree(zoo / TRAINED[0], zoo / TRAINED[1])
    manifest = json.loads((zoo / TRAINED[1] / "manifest.json").read_text())
    (zoo / TRAINED[1] / "manifest.json").write_text(json.dumps({**manifest, "name": TRAINED[1]}))  # a zoo entry's own name
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
