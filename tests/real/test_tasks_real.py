"""Every task with files in ../shared/data loads through the task registry (`--data-dir`) with exact counts."""
from __future__ import annotations

import pytest

from stepstone.errors import StepstoneError
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples

pytestmark = pytest.mark.real
TRAIN, DEV, TEST = Split.TRAIN, Split.VALIDATION, Split.TEST

COUNTS = [
    ("sst2", TRAIN, "en", 60_614), ("sst2", DEV, "en", 6_735), ("sst2", TEST, "en", 872),
    ("anli", DEV, "en", 3_200), ("anli", TEST, "en", 3_200),
    ("hellaswag", DEV, "en", 10_042), ("cosmosqa", DEV, "en", 2_985), ("commonsenseqa", DEV, "en", 1_221),
    ("siqa", DEV, "en", 1_954), ("copa", TRAIN, "en", 400), ("copa", DEV, "en", 100),
    ("xnli", DEV, "de", 2_490), ("xnli", DEV, "en", 2_490), ("pawsx", DEV, "zh", 2_000),
    ("udpos", TRAIN, "en", 21_253), ("udpos", TEST, "hi", 2_684), ("udpos", TEST, "de", 977), ("udpos", DEV, "de", 799),
    ("panx", TRAIN, "en", 20_000), ("panx", DEV, "hi", 1_000),
    ("xquad", TEST, "zh", 1_190), ("tydiqa", TRAIN, "en", 3_696),
    ("tatoeba", TEST, "fr", 1_000), ("bucc", DEV, "zh", 1),
]


@pytest.mark.parametrize("task,split,lang,count", COUNTS, ids=[f"{t}-{s.value}-{lang}" for t, s, lang, _ in COUNTS])
def test_task_loads_from_shared_data(shared_data, task, split, lang, count):
    spec = get_task(task)
    examples = load_examples(spec, split, lang, shared_data)
    assert len(examples) == count


def test_bucc_problem_shape(shared_data):
    (problem,) = load_examples(get_task("bucc"), DEV, "zh", shared_data)
    assert (len(problem["source"]), len(problem["target"]), len(problem["gold"])) == (8_624, 13_589, 257)


def test_target_task_borrows_english_training_data(shared_data):
    # XNLI trains on MNLI, which is not in ../shared: the error names MNLI's task, split and the missing hub
    with pytest.raises(StepstoneError, match="no local file layout for this task"):
        load_examples(get_task("xnli"), TRAIN, "en", shared_data)
    # XCOPA trains on English COPA, which is there
    assert len(load_examples(get_task("xcopa"), TRAIN, "en", shared_data)) == 400


def test_missing_local_file_names_what_was_looked_for(shared_data):
    with pytest.raises(StepstoneError, match=r"no test file for language 'ja' under .*target/pawsx/test-ja.tsv"):
        load_examples(get_task("pawsx"), TEST, "ja", shared_data)


def test_anli_plus_dev_is_anli_dev(shared_data):
    assert len(load_examples(get_task("anli-plus"), DEV, "en", shared_data)) == 3_200
