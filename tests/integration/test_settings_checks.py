"""Valid settings that used to crash, and settings that cannot mean what was asked (issue 13): QA windows after
a long question, evaluation's own window settings, backbone-dependent limits. The refusals themselves are
cases of tests/cli/test_bad_input_catalogue.py; here: what runs, and what it records."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from stepstone import pipelines
from stepstone.pipelines import train as train_steps
from stepstone.backbone import load_backbone
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.methods import BottleneckSpec, LoRASpec
from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples
from stepstone_cli.main import app

torch.set_num_threads(1)
FAST = ("train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16")


def cli(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


def test_qa_with_a_stride_larger_than_the_window_trains_and_evaluates(tmp_path, monkeypatch):
    """The issue's command: max_length 20 leaves toy questions (6-7 tokens) a window of 9-10 tokens, less
    than the stride of 12; each example overlaps by its window less one, and its windows cover its context."""
    monkeypatch.chdir(tmp_path)
    trained = cli("train", "--task", "toy-qa", "--zoo", "zoo", "-q", *FAST, "train.max_length=20", "train.doc_stride=12")
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((tmp_path / "zoo" / "toy-qa-bottleneck" / "manifest.json").read_text())
    assert manifest["spec"]["train"]["doc_stride"] == 12 and manifest["data"]["train_examples"] == 32
    task, tokenizer = get_task("toy-qa"), load_backbone(BackboneSpec("tiny")).tokenizer
    examples = load_examples(task, Split.TRAIN, "en", None, 32)
    rows = handler_for(task).encode(examples, tokenizer, task, 20, 12, train=True)
    assert manifest["data"]["train_features"] == len(rows) > 3 * len(examples)
    for index, example in enumerate(examples):
        covered = {tuple(o) for r in rows if r["example_index"] == index for o in r["offsets"] if o is not None}
        context = tokenizer(example["context"], add_special_tokens=False, return_offsets_mapping=True)
        assert covered == {tuple(o) for o in context["offset_mapping"]}

    default = cli("evaluate", "toy-qa-bottleneck", "--zoo", "zoo", "-q", "--split", "validation", "--langs", "en",
                  "--max-examples", "16")
    assert default.exit_code == 0, default.output
    report = json.loads((tmp_path / "zoo" / "toy-qa-bottleneck" / "evaluations" / "toy-qa.validation.json").read_text())
    assert "encoding" not in report  # the run's own settings, in its manifest
    assert report["scores"]["en"] == manifest["metrics"]["dev"]

    chosen = cli("evaluate", "toy-qa-bottleneck", "--zoo", "zoo", "-q", "--max-examples", "4", "--doc-stride", "15",
                 "--max-length", "24", "--output", "wide.json")
    assert chosen.exit_code == 0, chosen.output
    report = json.loads((tmp_path / "wide.json").read_text())
    assert report["encoding"] == {"max_length": 24, "doc_stride": 15}
    assert set(report["scores"]) == {"en", "xa", "xb"} and report["examples"] == {"en": 4, "xa": 4, "xb": 4}


def test_doc_stride_is_not_checked_for_tasks_without_windows(tmp_path, monkeypatch):
    """A tagging task never windows: doc_stride 0 (or one above max_length) means nothing there, and used
    to be refused anyway; evaluation records max_length only and refuses --doc-stride."""
    monkeypatch.chdir(tmp_path)
    trained = cli("train", "--task", "toy-tags", "--zoo", "zoo", "-q", *FAST, "train.doc_stride=0", "train.max_length=32")
    assert trained.exit_code == 0, trained.output
    evaluated = cli("evaluate", "toy-tags-bottleneck", "--zoo", "zoo", "-q", "--langs", "en", "--max-examples", "4")
    assert evaluated.exit_code == 0, evaluated.output
    assert "encoding" not in json.loads((tmp_path / "zoo" / "toy-tags-bottleneck" / "evaluations" /
                                         "toy-tags.test.json").read_text())
    shorter = cli("evaluate", "toy-tags-bottleneck", "--zoo", "zoo", "-q", "--langs", "en", "--max-examples", "4",
                  "--max-length", "16", "--output", "short.json")
    assert shorter.exit_code == 0, shorter.output
    assert json.loads((tmp_path / "short.json").read_text())["encoding"] == {"max_length": 16}
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    refused = cli("evaluate", "toy-tags-bottleneck", "--zoo", "zoo", "-q", "--doc-stride", "8")
    assert refused.exit_code == 2 and refused.stderr == ("error: --doc-stride applies to QA tasks only: 'toy-tags' is "
                                                         "a tagging task, which has no windows\n")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_the_position_limit_of_the_backbone():
    tiny = load_backbone(BackboneSpec("tiny"))
    assert (tiny.model.config.max_position_embeddings, tiny.max_tokens) == (514, 512)  # XLM-R: positions from 2
    tiny.check_max_length(512)
    with pytest.raises(StepstoneError, match=r"^train.max_length is 513, but backbone 'tiny' takes at most 512 tokens "
                                             r"\(max_position_embeddings 514, positions start at 2\): set "
                                             r"train.max_length to 512 or less$"):
        tiny.check_max_length(513)


def test_method_settings_are_checked_against_the_hidden_size():
    from stepstone.methods import check_fits

    config = load_backbone(BackboneSpec("tiny")).model.config  # hidden size 128
    check_fits(MethodSpec(bottleneck=BottleneckSpec(reduction_factor=128)), config)  # a 1-unit bottleneck: valid
    check_fits(MethodSpec(kind="lora", lora=LoRASpec(r=128)), config)
    with pytest.raises(StepstoneError, match=r"^method.bottleneck.reduction_factor is 129, larger than the backbone's "
                                             r"hidden size 128: "):
        check_fits(MethodSpec(bottleneck=BottleneckSpec(reduction_factor=129)), config)
    with pytest.raises(StepstoneError, match=r"^method.lora.r is 129, larger than the backbone's hidden size 128: "):
        check_fits(MethodSpec(kind="lora", lora=LoRASpec(r=129)), config)
    check_fits(MethodSpec(kind="full"), config)


@pytest.mark.parametrize("settings, message", [
    (dict(weight_decay=-0.1), "weight_decay must be >= 0 (got -0.1): a negative one grows the weights"),
    (dict(max_grad_norm=0.0), "max_grad_norm must be > 0 (got 0.0): gradients are clipped to this norm, so 0 "
                              "would stop every update"),
    (dict(threads=0), "threads must be >= 1, or null for $STEPSTONE_THREADS / torch's default (got 0)"),
    (dict(seed=2**64), "seed must fit torch's 64-bit generator (got 18446744073709551616)"),
], ids=["weight-decay", "max-grad-norm", "threads", "seed"])
def test_train_settings_that_cannot_mean_what_was_asked(settings, message):
    with pytest.raises(ValueError) as caught:
        TrainSpec(**settings)
    assert str(caught.value) == message


def test_settings_of_another_method_are_refused():
    with pytest.raises(ValueError) as caught:
        MethodSpec(kind="lora", bottleneck=BottleneckSpec(reduction_factor=4))
    assert str(caught.value) == ("method.bottleneck settings are given, but method.kind is lora, which does not use "
                                 "them: set method.kind to bottleneck, or drop them")
    with pytest.raises(ValueError, match=r"^lora.alpha must be > 0 \(got 0\)"):
        LoRASpec(alpha=0)
    # what saved configs hold (the other method's defaults) still builds
    assert MethodSpec(kind="full", bottleneck=BottleneckSpec(), lora=LoRASpec()).kind == "full"


def test_a_library_caller_gets_the_same_refusals(tmp_path):
    spec = RunSpec(task="toy-tags", name="x", train=TrainSpec(max_length=600, epochs=1, max_train_examples=8))
    with pytest.raises(StepstoneError, match=r"^train.max_length is 600, but backbone 'tiny' takes at most 512"):
        pipelines.train_run(spec, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_qa_window_settings_are_refused_before_the_destination_is_checked_or_locked(tmp_path, monkeypatch):
    """A settings error comes before any filesystem work: no destination check, no lock, no leftover clean-up."""
    from stepstone.zoo import Zoo

    touched = []
    monkeypatch.setattr(train_steps, "check_destination", lambda *args, **kwargs: touched.append(args))
    monkeypatch.setattr(train_steps, "_lock_run", lambda *args: touched.append("lock"))
    spec = RunSpec(task=("toy-qa",), backbone=BackboneSpec("tiny"),
                   train=TrainSpec(epochs=1, max_train_examples=8, max_length=20, doc_stride=20))
    with pytest.raises(StepstoneError) as err:
        pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs")
    assert str(err.value) == ("train.doc_stride (20) must be smaller than train.max_length (20): QA windows of "
                              "max_length tokens overlap by doc_stride tokens")
    assert touched == [] and list(tmp_path.iterdir()) == []
