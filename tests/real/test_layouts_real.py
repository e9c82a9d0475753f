"""../shared/data as CI has it: where English dev data comes from, blank TyDiQA dev answers, and evaluation
over languages of which only some have files (skipped when ../shared is absent)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stepstone import pipelines
from stepstone.errors import StepstoneError
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples
from stepstone_cli.main import app

pytestmark = pytest.mark.real
DEV, TEST = Split.VALIDATION, Split.TEST
BLANK = ("{dev}: no gold answers: all 440 questions have an answer with empty text; to train without a dev set, "
         "pass train.dev=false train.select_best=false")


def test_tydiqa_trains_with_its_own_english_dev_file_whose_answers_are_blank(shared_data):
    dev = shared_data / "target/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.en.dev.json"
    with pytest.raises(StepstoneError) as err:
        load_examples(get_task("tydiqa"), DEV, "en", shared_data)
    assert str(err.value) == BLANK.format(dev=dev)


def test_tydiqa_train_command_names_the_blank_dev_file(shared_data, tmp_path):
    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, [
        "train", "--task", "tydiqa", "--data-dir", str(shared_data), "--zoo", str(tmp_path / "zoo"), "-q",
        "train.max_train_examples=8"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {BLANK.format(dev=shared_data / 'target/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.en.dev.json')}"]
    assert not (tmp_path / "zoo").exists()


def test_tydiqa_test_split_without_labels_says_where_they_go(shared_data):
    with pytest.raises(StepstoneError) as err:
        load_examples(get_task("tydiqa"), TEST, "sw", shared_data)
    assert str(err.value) == (
        f"{shared_data / 'target/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.sw.dev.json'}: no gold answers: all 499 "
        "questions have an answer with empty text; XTREME keeps test labels in separate files: put this one's at "
        f"{shared_data / 'labels/tydiqa/test-sw.json'}")


def test_english_dev_of_evaluation_only_targets(shared_data):
    with pytest.raises(StepstoneError) as err:  # MLQA's own English dev (not SQuAD's); MLQA is not in ../shared
        load_examples(get_task("mlqa"), DEV, "en", shared_data)
    assert str(err.value) == (f"no validation file for language 'en' under {shared_data} (looked for: "
                              "target/mlqa/dev/dev-context-en-question-en.json, "
                              "target/mlqa/MLQA_V1/dev/dev-context-en-question-en.json)")
    with pytest.raises(StepstoneError) as err:  # XQuAD has only a test set: its English dev is SQuAD's
        load_examples(get_task("xquad"), DEV, "en", shared_data)
    assert str(err.value) == (f"no validation file for language 'en' under {shared_data} (looked for: "
                              "intermediate/squad/dev.json, intermediate/squad/dev-v1.1.json)")
    assert len(load_examples(get_task("xcopa"), DEV, "en", shared_data)) == 100  # COPA's val


def test_evaluate_scores_the_languages_present_and_skips_the_rest(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = pipelines.evaluate(None, backbone="tiny", task="tatoeba", langs=["de", "ja", "fr"], max_examples=8,
                                data_dir=shared_data)
    assert sorted(result.scores) == ["de", "fr"]
    assert result.skipped == {"ja": f"no test file for language 'ja' under {shared_data} (looked for: "
                                    "target/tatoeba/tatoeba.jpn-eng.jpn, target/tatoeba/ja-en.ja, "
                                    "target/tatoeba/ja-en.en, labels/tatoeba/test-ja.tsv)"}
    assert json.loads(result.output.read_text())["skipped"] == result.skipped


def test_udpos_test_languages_in_shared(shared_data):
    """The XTREME tsv files and German's raw CoNLL-U: exactly these benchmark languages have UD-POS test data."""
    task = get_task("udpos")
    present = [lang for lang in task.official_languages if task.source.has_local(TEST, lang, shared_data)]
    assert present == ["ar", "de", "en", "es", "fr", "hi", "ru", "zh"]
