"""Robustness (`evaluate --perturb`) and domain shift (`evaluate --data-file`) on tiny.

Perturbations: rate 0 is the identity, a seed reproduces, another seed differs, typo characters come from the
example's own script (no mark split from its base), labels stay aligned (tagging tokens with their tags, QA answers
at their recomputed answer_start), codeswitch replaces exactly the lexicon's words at rate 1; the evaluation
report and the CLI tables. Domain shift: a language's file passed as --data-file scores exactly what that language
scores in-domain; a file in the wrong format is one error line naming it, and nothing is written.
"""
from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stepstone import pipelines
from stepstone.errors import StepstoneError
from stepstone.perturb import parse, perturb_examples
from stepstone.perturb.noise import clusters, script
from stepstone.specs import MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples
from stepstone.zoo import Zoo
from stepstone_cli.main import app

TRAIN = TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16)
TOY = ("toy-sentiment", "toy-pair", "toy-tags", "toy-qa", "toy-choice")
SPECS = ("typo:0.2", "dropout:0.3")


def toy_examples(task: str, n: int = 30, lang: str = "en") -> list[dict]:
    return load_examples(get_task(task), Split.TEST, lang, None, n)


def tagged(*tokens: str) -> list[dict]:
    """One toy-tags example per call argument group: tokens tagged O (the tags do not matter to the noise)."""
    return [{"tokens": list(tokens), "tags": ["O"] * len(tokens)}]


# ---------------------------------------------------------------------------------------- perturbations
@pytest.mark.parametrize("task", TOY)
@pytest.mark.parametrize("kind", ["typo", "dropout"])
def test_rate_zero_is_the_identity(task, kind):
    examples = toy_examples(task)
    before = json.dumps(examples)
    assert perturb_examples(get_task(task), examples, parse(f"{kind}:0"), 0, "en") == examples
    assert json.dumps(examples) == before  # the input is not changed


@pytest.mark.parametrize("task", TOY)
@pytest.mark.parametrize("spec", SPECS)
def test_a_seed_reproduces_and_another_seed_differs(task, spec):
    task_spec, examples, p = get_task(task), toy_examples(task), parse(spec)
    first = perturb_examples(task_spec, examples, p, 3, "en")
    assert perturb_examples(task_spec, examples, p, 3, "en") == first
    assert first != examples
    assert perturb_examples(task_spec, examples, p, 4, "en") != first
    assert perturb_examples(task_spec, examples, p, 3, "xa") != first  # the language is part of the seed


@pytest.mark.parametrize("text", ["καλημέρα κόσμε", "привет мир как дела", "東京は日本の首都です", "नमस्ते दुनिया",
                                  "Müller straße café"])
def test_typo_characters_come_from_the_examples_own_script(text):
    task = get_task("toy-tags")
    words = text.split(" ")
    examples = tagged(*words)
    changed = 0
    for seed in range(20):
        (out,) = perturb_examples(task, examples, parse("typo:0.3"), seed, "xx")
        assert len(out["tokens"]) == len(words)
        for before, after in zip(words, out["tokens"]):
            assert after and not unicodedata.category(after[0]).startswith("M")  # no mark without its base
            assert set(clusters(after)) <= set(clusters(text))  # only the example's own characters
            assert {script(c) for c in clusters(after)} <= {script(c) for c in clusters(before)}
            changed += after != before
    assert changed > 10


def test_typo_in_a_mixed_script_example_keeps_each_word_in_its_script():
    examples = tagged("hello", "κόσμε", "мир", "東京", "123")
    (out,) = perturb_examples(get_task("toy-tags"), examples, parse("typo:1"), 0, "xx")
    assert [{script(c) for c in clusters(t)} for t in out["tokens"]] == [{"LATIN"}, {"GREEK"}, {"CYRILLIC"}, {"CJK"},
                                                                        {"N"}]


def test_tagging_dropout_removes_a_token_with_its_tag_and_never_every_token():
    task = get_task("toy-tags")
    example = {"tokens": [f"w{i}" for i in range(12)], "tags": list(task.labels) * 2 + ["O", "O"]}
    pairs = list(zip(example["tokens"], example["tags"]))
    for seed in range(10):
        (out,) = perturb_examples(task, [example], parse("dropout:0.5"), seed, "en")
        kept = list(zip(out["tokens"], out["tags"]))
        assert len(out["tokens"]) == len(out["tags"]) and kept == [p for p in pairs if p in kept]
        (out,) = perturb_examples(task, [example], parse("dropout:1"), seed, "en")
        assert len(out["tokens"]) == 1 and tuple(zip(out["tokens"], out["tags"]))[0] in pairs


def test_tagging_typo_and_codeswitch_keep_one_tag_per_token(tmp_path):
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("new neu\nyork\tjork\ncat Katze\n")
    example = {"tokens": ["the", "cat", "visits", "new", "york", "."], "tags": ["O", "O", "O", "B-LOC", "I-LOC", "O"]}
    (out,) = perturb_examples(get_task("toy-tags"), [example], parse(f"codeswitch:{lexicon}:1"), 0, "en")
    assert out == {"tokens": ["the", "Katze", "visits", "neu", "jork", "."], "tags": example["tags"]}
    (out,) = perturb_examples(get_task("toy-tags"), [example], parse("typo:0.5"), 0, "en")
    assert out["tags"] == example["tags"] and len(out["tokens"]) == 6 and out["tokens"] != example["tokens"]


@pytest.mark.parametrize("spec", ["typo:0.3", "typo:1", "dropout:0.5", "dropout:1"])
def test_qa_answers_stay_verbatim_at_their_recomputed_answer_start(spec):
    examples = toy_examples("toy-qa", 100) + [{
        "id": "q", "question": "who wrote it?", "context": "It was written by Jean-Paul Sartre's friend, in Paris.",
        "answers": {"text": ["Sartre", "Jean-Paul Sartre", "Paris"], "answer_start": [28, 18, 48]}}]
    outs = perturb_examples(get_task("toy-qa"), examples, parse(spec), 0, "en")
    moved = 0
    for before, after in zip(examples, outs):
        assert after["answers"]["text"] == before["answers"]["text"] and after["id"] == before["id"]
        for text, start in zip(after["answers"]["text"], after["answers"]["answer_start"]):
            assert after["context"][start:start + len(text)] == text
        moved += after["answers"]["answer_start"] != before["answers"]["answer_start"]
    assert outs[-1]["context"] != examples[-1]["context"] and "Jean-Paul Sartre's" in outs[-1]["context"]
    assert moved > 10


def test_codeswitch_at_rate_1_replaces_exactly_the_lexicons_words(tmp_path):
    lexicon = tmp_path / "en-de.txt"
    lexicon.write_text("the der\nthe die\ncat Katze\n\nlovely\tschön\n")
    p = parse(f"codeswitch:{lexicon}:1")
    assert p.translations == {"the": ("der", "die"), "cat": ("Katze",), "lovely": ("schön",)}
    examples = [{"text": "The cat is lovely.", "text_pair": "a dog", "label": "positive"}]
    (out,) = perturb_examples(get_task("toy-sentiment"), examples, p, 0, "en")
    first, rest = out["text"].split(" ", 1)
    assert first in ("der", "die") and rest == "Katze is schön." and out["text_pair"] == "a dog"
    assert out["label"] == "positive"
    picks = {perturb_examples(get_task("toy-sentiment"), examples, p, seed, "en")[0]["text"].split()[0]
             for seed in range(20)}
    assert picks == {"der", "die"}  # several translations: drawn with the example's (seeded) generator
    (none,) = perturb_examples(get_task("toy-sentiment"), examples, parse(f"codeswitch:{lexicon}:0"), 0, "en")
    assert none == examples[0]


def test_multiple_choice_perturbs_context_and_choices_and_keeps_the_label():
    examples = toy_examples("toy-choice")
    outs = perturb_examples(get_task("toy-choice"), examples, parse("typo:0.3"), 0, "en")
    assert [e["label"] for e in outs] == [e["label"] for e in examples]
    assert all(len(a["choices"]) == len(b["choices"]) for a, b in zip(outs, examples))
    assert any(a["context"] != b["context"] for a, b in zip(outs, examples))
    assert any(a["choices"] != b["choices"] for a, b in zip(outs, examples))


def test_labels_are_canonical_and_a_lexicon_is_relative_to_base(tmp_path):
    (tmp_path / "lex.txt").write_text("a b\n")
    assert parse("typo:0.050").label == "typo:0.05" and parse(" dropout:1 ").label == "dropout:1"
    assert parse("codeswitch:lex.txt:0.30", base=tmp_path).label == "codeswitch:lex.txt:0.3"


def test_an_unreadable_lexicon_is_one_line(tmp_path, monkeypatch):
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("a b\n")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(StepstoneError, match=r"^.*lex\.txt: cannot read the lexicon \(Permission denied\)$"):
        parse(f"codeswitch:{lexicon}:0.5")


def test_retrieval_tasks_are_refused():
    with pytest.raises(StepstoneError, match="--perturb applies to trained tasks: 'tatoeba' is a retrieval task"):
        perturb_examples(get_task("tatoeba"), [{"source": "a", "target": "b"}], parse("typo:0.1"), 0, "de")


# ---------------------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def tags_run(tmp_path_factory) -> tuple[Zoo, Path]:
    zoo = Zoo(tmp_path_factory.mktemp("perturb") / "zoo")
    pipelines.train_run(RunSpec(task="toy-tags", name="tags", method=MethodSpec(kind="bottleneck"), train=TRAIN),
                        zoo=zoo, runs_dir=zoo.root.parent / "runs")
    return zoo, zoo.path("tags")


def test_the_report_has_clean_perturbed_and_drop_per_language(tags_run, tmp_path):
    zoo, _ = tags_run
    clean = pipelines.evaluate("tags", zoo=zoo, max_examples=20, output=tmp_path / "clean.json")
    result = pipelines.evaluate("tags", zoo=zoo, max_examples=20, output=tmp_path / "p.json", perturb_seed=5,
                                perturb=["typo:0", "typo:0.5", "dropout:0.3", "typo:0.50"])
    assert result.scores == clean.scores
    assert list(result.perturbed) == ["typo:0", "typo:0.5", "dropout:0.3"]  # a repeat is scored once
    assert result.perturbed["typo:0"] == clean.scores  # rate 0: exactly the clean scores
    assert result.perturbed["typo:0.5"] != clean.scores
    report = json.loads((tmp_path / "p.json").read_text())
    assert set(report) == set(json.loads((tmp_path / "clean.json").read_text())) | {"perturbed"}
    assert set(json.loads((tmp_path / "clean.json").read_text())) == {"artifact", "task", "split", "metric", "scores",
                                                                      "examples", "zero_shot"}
    for label, block in report["perturbed"].items():
        assert set(block) == {"seed", "scores", "drop"} and block["seed"] == 5
        assert block["scores"] == result.perturbed[label]
        assert block["drop"] == {lang: clean.scores[lang]["f1"] - block["scores"][lang]["f1"] for lang in clean.scores}
    assert set(report["perturbed"]["typo:0"]["drop"].values()) == {0.0}
    again = pipelines.evaluate("tags", zoo=zoo, max_examples=20, output=tmp_path / "q.json", perturb_seed=5,
                               perturb=["typo:0.5"])
    assert again.perturbed["typo:0.5"] == result.perturbed["typo:0.5"]  # the same seed: the same scores


def test_the_cli_prints_a_table_per_perturbation(tags_run, tmp_path, monkeypatch):
    zoo, _ = tags_run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lex.txt").write_text("the der\n")
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "evaluate", "tags", "--zoo", str(zoo.root), "-q", "--max-examples", "10", "--output", "e.json",
        "--perturb", "typo:0", "--perturb", "codeswitch:lex.txt:1", "--perturb-seed", "2"])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "e.json").read_text())["scores"]
    lines = [" ".join(line.strip("┃│ ").replace("│", " ").replace("┃", " ").split())
             for line in result.stdout.splitlines()]
    assert "typo:0: f1" in lines and "codeswitch:lex.txt:1: f1" in lines
    assert "language clean perturbed drop" in lines
    for lang in ("en", "xa", "xb"):
        assert f"{lang} {scores[lang]['f1']:.2f} {scores[lang]['f1']:.2f} 0.00" in lines
    mean = sum(s["f1"] for s in scores.values()) / 3
    assert f"mean {mean:.2f} {mean:.2f} 0.00" in lines
    assert lines[-1] == "wrote e.json"


def test_perturb_is_refused_for_retrieval_and_with_a_data_file(tags_run, tmp_path):
    zoo, _ = tags_run
    with pytest.raises(StepstoneError, match="^--perturb applies to trained tasks: 'tatoeba' is a retrieval task"):
        pipelines.evaluate("tags", zoo=zoo, task="tatoeba", perturb=["typo:0.1"], output=tmp_path / "e.json")
    with pytest.raises(StepstoneError, match="^--perturb and --data-file are separate evaluations"):
        pipelines.evaluate("tags", zoo=zoo, perturb=["typo:0.1"], data_file=tmp_path / "x.tsv",
                           output=tmp_path / "e.json")
    with pytest.raises(StepstoneError, match=r"^--data-file needs a task with a local file format: 'toy-tags' is "
                                             r"read from generated \(stepstone.toy\)$"):
        pipelines.evaluate("tags", zoo=zoo, data_file=tmp_path / "x.tsv", output=tmp_path / "e.json")
    assert not (tmp_path / "e.json").exists()


# ---------------------------------------------------------------------------------------- domain shift
def _tsv(examples: list[dict]) -> str:
    return "\n\n".join("\n".join(f"{t}\t{g}" for t, g in zip(e["tokens"], e["tags"])) for e in examples) + "\n"


@pytest.fixture(scope="module")
def panx_run(tmp_path_factory) -> tuple[Zoo, Path]:
    """A PAN-X run on tiny, trained on toy-tags sentences written as XTREME tagging files (en train/dev,
    de and en test)."""
    root = tmp_path_factory.mktemp("domain")
    data = root / "data" / "target" / "panx"
    data.mkdir(parents=True)
    for name, lang, split, n in (("train-en", "en", Split.TRAIN, 64), ("dev-en", "en", Split.VALIDATION, 16),
                                 ("test-en", "en", Split.TEST, 24), ("test-de", "xa", Split.TEST, 24)):
        (data / f"{name}.tsv").write_text(_tsv(load_examples(get_task("toy-tags"), split, lang, None, n)))
    zoo = Zoo(root / "zoo")
    pipelines.train_run(RunSpec(task="panx", name="panx", method=MethodSpec(kind="bottleneck"), train=TRAIN,
                                data_dir=str(root / "data")), zoo=zoo, runs_dir=root / "runs")
    return zoo, root / "data"


def test_a_languages_file_as_data_file_scores_what_it_scores_in_domain(panx_run, tmp_path):
    zoo, data = panx_run
    shutil.copy(data / "target" / "panx" / "test-de.tsv", tmp_path / "news.tsv")
    result = pipelines.evaluate("panx", zoo=zoo, langs=["de", "en"], data_dir=data, data_file=tmp_path / "news.tsv",
                                output=tmp_path / "e.json")
    domain = result.domain
    assert domain["scores"] == result.scores["de"]  # the same examples, the same metric: identical
    assert set(domain) == {"file", "label", "examples", "scores", "in_domain", "drop"}
    assert (domain["file"], domain["label"], domain["examples"]) == (str(tmp_path / "news.tsv"), "news", 24)
    assert domain["in_domain"] == (result.scores["de"]["f1"] + result.scores["en"]["f1"]) / 2
    assert domain["drop"] == domain["in_domain"] - domain["scores"]["f1"]
    assert json.loads((tmp_path / "e.json").read_text())["domain"] == domain
    limited = pipelines.evaluate("panx", zoo=zoo, langs=["de"], data_dir=data, data_file=tmp_path / "news.tsv",
                                 max_examples=5, output=tmp_path / "f.json")
    assert limited.domain["examples"] == 5 and limited.domain["scores"] == limited.scores["de"]


def test_the_cli_prints_the_files_row_and_the_drop(panx_run, tmp_path, monkeypatch):
    zoo, data = panx_run
    monkeypatch.chdir(tmp_path)
    shutil.copy(data / "target" / "panx" / "test-de.tsv", tmp_path / "news.tsv")
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "evaluate", "panx", "--zoo", str(zoo.root), "-q", "--langs", "de", "--data-dir", str(data),
        "--data-file", "news.tsv", "--output", "e.json"])
    assert result.exit_code == 0, result.output
    f1 = json.loads((tmp_path / "e.json").read_text())["scores"]["de"]["f1"]
    lines = [" ".join(line.strip("┃│ ").replace("│", " ").replace("┃", " ").split())
             for line in result.stdout.splitlines()]
    assert "domain shift: news.tsv, main metric: f1" in lines
    assert any(line.startswith("news 24 ") and f" {f1:.2f} " in f"{line} " for line in lines)
    assert f"in-domain f1 {f1:.2f} (mean of de), news {f1:.2f}: drop 0.00" in lines


@pytest.mark.parametrize("content, message", [
    ("1\tBerlin\t_\tPROPN\t_\t_\t0\troot\t_\t_\n", "{file}:1: expected 2 tab-separated columns, found 10"),
    ('{"data": []}\n', "{file}:1: expected 2 tab-separated columns, found 1; --data-file needs gold labels"),
    ("", "{file}: empty file"),
    ("Berlin\tB-CITY\n", "{file}:1: label 'B-CITY' is not a label of task 'panx' (valid: <*>)"),
])
def test_a_data_file_in_the_wrong_format_is_one_error_and_writes_nothing(panx_run, tmp_path, content, message):
    zoo, data = panx_run
    bad = tmp_path / "bad.tsv"
    bad.write_text(content)
    with pytest.raises(StepstoneError) as err:
        pipelines.evaluate("panx", zoo=zoo, langs=["de"], data_dir=data, data_file=bad, output=tmp_path / "e.json")
    import re

    expected = re.escape(message.format(file=bad)).replace(re.escape("<*>"), ".*")
    assert re.fullmatch(expected, str(err.value)), str(err.value)
    assert not (tmp_path / "e.json").exists()
