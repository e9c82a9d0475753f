"""XQuAD under the cpu-small grid's TyDiQA settings (max_length 96, the default doc_stride 64) on the real
multilingual-e5-small tokenizer (issue 13): questions of up to 79 tokens used to make the tokenizer panic in
every language; now each example overlaps by what its window allows and its windows cover its context."""
from __future__ import annotations

import pytest

from stepstone.formats import handler_for
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples

pytestmark = pytest.mark.real
LONGEST_QUESTION = {"ar": 68, "hi": 79}  # tokens, over the whole test split


@pytest.mark.parametrize("lang", ["ar", "hi"])
def test_every_xquad_example_is_windowed_after_a_long_question(shared_data, e5_backbone, lang):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(e5_backbone))
    task = get_task("xquad")
    examples = load_examples(task, Split.TEST, lang, shared_data)
    questions = tokenizer([e["question"].lstrip() for e in examples], add_special_tokens=False)["input_ids"]
    assert max(len(q) for q in questions) == LONGEST_QUESTION[lang]
    narrow = [i for i, q in enumerate(questions) if 96 - 4 - len(q) <= 64]  # windows of at most the stride
    assert narrow  # the examples one tokenizer call with stride 64 panicked on
    rows = handler_for(task).encode(examples, tokenizer, task, 96, 64, train=False)
    assert {r["example_index"] for r in rows} == set(range(len(examples))) and all(len(r["input_ids"]) <= 96 for r in rows)
    for index in narrow:
        covered = {tuple(o) for r in rows if r["example_index"] == index for o in r["offsets"] if o is not None}
        context = tokenizer(examples[index]["context"], add_special_tokens=False, return_offsets_mapping=True)
        assert covered == {tuple(o) for o in context["offset_mapping"]}
