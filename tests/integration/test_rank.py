"""`stepstone rank` on the tiny backbone: every estimator for classification, tagging and multiple-choice targets
(QA falls back from LogME), the features each reads, the cache, proxy = a real short training, the JSON, the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stepstone import pipelines
from stepstone.backbone import load_backbone
from stepstone.errors import StepstoneError
from stepstone.formats import handler_for
from stepstone.ranking import NONE, Estimator, Ranking, rank
from stepstone.ranking import estimators as by_kind
from stepstone.ranking import features as feats
from stepstone.ranking.logme import logme
from stepstone.ranking.proxy import proxy_score, proxy_train
from stepstone.specs import BackboneSpec, Block, Composition, MethodSpec, RunSpec, TrainSpec
from stepstone.tasks import Split, get_task
from stepstone.tasks.examples import load_examples
from stepstone.zoo import Zoo
from stepstone_cli.main import app

torch.set_num_threads(1)

TRAIN = TrainSpec(lr=5e-3, epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16)
ENTRIES = {"bn-sent": "toy-sentiment", "bn-pair": "toy-pair", "bn-tags": "toy-tags"}
ALL = [Estimator.LOGME, Estimator.SEMB, Estimator.PROXY]
PROXY = TrainSpec(lr=1e-3, batch_size=8, max_length=96, max_eval_examples=16)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Zoo:
    """Three bottleneck adapters of three toy tasks (two formats) on the tiny backbone."""
    store = Zoo(tmp_path_factory.mktemp("rank") / "zoo")
    for name, task in ENTRIES.items():
        pipelines.train_run(RunSpec(task=task, name=name, method=MethodSpec(kind="bottleneck"), train=TRAIN),
                            zoo=store, runs_dir=store.root.parent / "runs")
    return store


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("STEPSTONE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def ranked(zoo: Zoo, target: str, estimators=(Estimator.LOGME, Estimator.SEMB), **options) -> Ranking:
    return rank(target, zoo=zoo, estimators=estimators, examples=48, train=PROXY, steps=3, **options)


@pytest.mark.parametrize("target", ["toy-sentiment", "toy-tags", "toy-choice"])
def test_every_estimator_scores_every_candidate_for_each_format(zoo, cache, target):
    result = ranked(zoo, target, ALL)
    assert [r.candidate for r in result.rows] == [NONE, "bn-pair", "bn-sent", "bn-tags"]
    assert [r.intermediate for r in result.rows] == [None, "toy-pair", "toy-sentiment", "toy-tags"]
    assert [r.method for r in result.rows] == [None, "bottleneck", "bottleneck", "bottleneck"]
    assert (result.target, result.backbone, result.examples, result.estimators) == (target, "tiny", 48, tuple(ALL))
    assert result.notes == ()
    for row in result.rows:
        assert set(row.scores) == {"logme", "semb", "proxy"}
        for name, score in row.scores.items():
            if row.candidate == NONE and name == "semb":  # the bare backbone has no training data of its own
                assert score.value is None and score.note == "the bare backbone has no intermediate training data to compare"
            else:
                assert math.isfinite(score.value) and score.note is None and score.seconds > 0
    assert [r.candidate for r in result.order("logme")] == sorted(
        (r.candidate for r in result.rows), key=lambda c: (-next(r for r in result.rows if r.candidate == c)
                                                            .value("logme"), c))
    assert len(result.order("semb")) == 3  # NONE is not scored by similarity
    own = {"toy-sentiment": "bn-sent", "toy-tags": "bn-tags"}.get(target)
    if own is not None:  # an adapter's own training texts are the target's: similarity 1
        assert next(r for r in result.rows if r.candidate == own).value("semb") == pytest.approx(1.0, abs=1e-9)
        assert result.order("semb")[0].candidate == own
    assert Ranking.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_rank_is_deterministic_and_the_second_run_reads_the_cache(zoo, cache):
    first = ranked(zoo, "toy-tags")
    files = sorted(p.name for p in cache.iterdir())
    # LogME features: none + 3 adapters; embeddings: toy-tags (the target's texts, and bn-tags' training texts: the
    # same rows, one file), toy-sentiment, toy-pair
    assert len(files) == 4 + 3
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # written atomically: no temporary leftovers
    second = ranked(zoo, "toy-tags")
    for a, b in zip(first.rows, second.rows):
        assert {k: s.value for k, s in a.scores.items()} == {k: s.value for k, s in b.scores.items()}
        # the first run computes each once: bn-tags' training texts are the target's, embedded just before
        assert [k for k, s in a.scores.items() if s.cached] == (["semb"] if a.candidate == "bn-tags" else [])
        assert all(s.cached for k, s in b.scores.items() if s.value is not None)
    assert sorted(p.name for p in cache.iterdir()) == files


def test_an_unreadable_cache_file_is_computed_again(zoo, cache):
    first = ranked(zoo, "toy-sentiment", (Estimator.LOGME,))
    for path in cache.iterdir():
        path.write_bytes(b"not safetensors")
    again = ranked(zoo, "toy-sentiment", (Estimator.LOGME,))
    assert [r.value("logme") for r in again.rows] == [r.value("logme") for r in first.rows]
    assert not any(r.scores["logme"].cached for r in again.rows)


def test_no_cache_when_it_is_off(zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("STEPSTONE_CACHE", "off")
    monkeypatch.chdir(tmp_path)
    ranked(zoo, "toy-sentiment", (Estimator.LOGME,))
    assert list(tmp_path.iterdir()) == []


def test_logme_reads_the_heads_inputs_with_the_candidate_active(zoo, cache):
    """The LogME score is LogME of exactly these features: <s> per sentence, first sub-words with their tags,
    <s> per (context, option) pair with 1 for the answer; the candidate's adapter changes them."""
    backbone = load_backbone(BackboneSpec("tiny"))
    model, tokenizer = backbone.model, backbone.tokenizer
    for target in ("toy-sentiment", "toy-tags", "toy-choice"):
        task = get_task(target)
        examples = load_examples(task, Split.TRAIN, "en", None, 48)
        rows = handler_for(task).encode(examples, tokenizer, task, PROXY.max_length, PROXY.doc_stride, True)
        bare = feats.labelled_features(model, handler_for(task), task.format, rows, tokenizer)
        entry = zoo.get("bn-pair")
        with by_kind.active(model, entry):
            active = feats.labelled_features(model, handler_for(task), task.format, rows, tokenizer)
        assert "bn-pair" not in model.adapters_config.adapters  # removed afterwards
        if task.format.value == "classification":
            # rows are read shortest first: the same labels, in another order
            assert bare.features.shape == (48, 128) and sorted(bare.labels) == sorted(r["labels"] for r in rows)
        elif task.format.value == "tagging":
            tags = [t for r in rows for t in r["labels"] if t != -100]
            assert bare.features.shape == (len(tags), 128) and sorted(bare.labels) == sorted(tags)
        else:
            assert bare.features.shape == (48 * task.num_choices, 128)
            per_example = bare.labels.reshape(48, task.num_choices)
            assert per_example.sum(1).tolist() == [1] * 48  # one answer among each example's options
            assert sorted(per_example.argmax(1)) == sorted(r["labels"] for r in rows)
        assert not np.allclose(bare.features, active.features)
        result = ranked(zoo, target, (Estimator.LOGME,))
        by_name = {r.candidate: r.value("logme") for r in result.rows}
        assert by_name[NONE] == pytest.approx(logme(bare.features, bare.labels), rel=1e-9)
        assert by_name["bn-pair"] == pytest.approx(logme(active.features, active.labels), rel=1e-9)


def test_proxy_is_a_short_stack_training_scored_on_dev(zoo, cache):
    """proxy's score is the dev score of the run it describes (the same run trained by hand), nothing is added
    to the zoo, no folder is left behind."""
    before = zoo.names()
    result = ranked(zoo, "toy-sentiment", (Estimator.PROXY,))
    assert zoo.names() == before
    spec = proxy_train(PROXY, 3, 48)
    assert (spec.epochs, spec.max_train_examples, spec.select_best, spec.checkpoint_every) == (1, 24, False, 0)
    by_hand = pipelines.train_run(RunSpec(task="toy-sentiment", name="by-hand", method=MethodSpec(kind="bottleneck"),
                                          train=spec, compose=Composition(Block.STACK, ("bn-pair",))),
                                  zoo=zoo, runs_dir=cache.parent / "runs")
    assert next(r for r in result.rows if r.candidate == "bn-pair").value("proxy") == by_hand.manifest.metrics.main_dev
    alone = proxy_score("toy-sentiment", None, "bottleneck", BackboneSpec("tiny"), spec, None, "train", zoo)
    assert result.rows[0].value("proxy") == alone
    assert result.reductions == {"proxy": "bottleneck target adapter, 3 steps of 8 at lr 0.001, English dev accuracy"}


def test_a_qa_target_falls_back_from_logme_to_proxy_with_a_note(zoo, cache):
    result = ranked(zoo, "toy-qa")
    assert result.estimators == (Estimator.SEMB, Estimator.PROXY)
    assert result.notes == ("logme does not apply to qa targets (toy-qa: answers are spans, not one label per feature "
                            "vector): ranked by semb, proxy instead",)
    assert all(r.value("proxy") is not None for r in result.rows)


def test_the_winner_and_its_on_string(zoo, cache):
    result = ranked(zoo, "toy-tags")
    winner = result.winner()
    assert winner == result.order("logme")[0]
    assert result.on("logme") == (None if winner.candidate == NONE else f"Stack({winner.candidate})")
    assert result.on("semb") == "Stack(bn-tags)"
    assert result.best_intermediate("semb") == "toy-tags"


def test_candidates_narrow_and_none_is_always_a_row(zoo, cache):
    result = ranked(zoo, "toy-tags", candidates=["bn-tags", "none", "bn-tags"])
    assert [r.candidate for r in result.rows] == [NONE, "bn-tags"]


def test_default_examples_take_all_when_there_are_fewer(zoo, cache):
    result = rank("toy-tags", zoo=zoo, estimators=["semb"], train=PROXY)
    assert result.examples == 400  # toy-tags has 400 training examples, fewer than the default 500


def test_a_default_zoo_leaves_out_adapters_of_another_backbone_when_the_backbone_is_named(zoo, cache, tmp_path):
    import shutil

    other = Zoo(tmp_path / "other")
    shutil.copytree(zoo.path("bn-sent"), other.path("bn-sent"))
    shutil.copytree(zoo.path("bn-pair"), other.path("bn-pair"))
    manifest = other.path("bn-pair") / "manifest.json"
    data = json.loads(manifest.read_text())
    data["backbone"].update(name="xlm-roberta-base", fingerprint="0123456789abcdef")
    manifest.write_text(json.dumps(data))
    result = rank("toy-tags", zoo=other, estimators=["semb"], backbone="tiny", examples=16, train=PROXY)
    assert [r.candidate for r in result.rows] == [NONE, "bn-sent"]
    with pytest.raises(StepstoneError, match="candidate 'bn-pair' was trained on backbone 'xlm-roberta-base'"):
        rank("toy-tags", zoo=other, candidates=["bn-pair"], backbone="tiny", examples=16, train=PROXY)


def test_bad_input_caches_nothing(zoo, cache):
    for kwargs in ({"target": "tatoeba"}, {"target": "toy-tagz"}, {"target": "toy-tags", "candidates": ["ghost"]},
                   {"target": "toy-tags", "examples": 100000}, {"target": "toy-tags", "estimators": ["x"]}):
        with pytest.raises(StepstoneError):
            rank(zoo=zoo, **kwargs)
    assert not cache.exists()


# ------------------------------------------------------------------------------------------------ CLI
def values(result: Ranking) -> dict:
    """Every candidate's scores (seconds and the cache flag aside)."""
    return {r.candidate: {k: (s.value, s.note) for k, s in r.scores.items()} for r in result.rows}


def cli(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, [str(a) for a in args])


def test_cli_prints_the_ranked_table_and_the_winners_on(zoo, cache):
    result = cli("rank", "--target", "toy-tags", "--zoo", zoo.root, "--examples", 48, "--max-length", 96, "-q")
    assert result.exit_code == 0, result.output
    expected = ranked(zoo, "toy-tags")
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "rank for toy-tags (48 English examples, backbone tiny)"
    body = [line for line in lines if line.startswith("│")]
    assert [line.split("│")[2].strip() for line in body] == [r.candidate for r in expected.order("logme")]
    first = body[0].split("│")
    winner = expected.order("logme")[0]
    assert first[1].strip() == "1" and first[3].strip() == f"{winner.value('logme'):.4f} (1)"
    semb = "best by semb: bn-tags: --on \"Stack(bn-tags)\""
    assert semb in lines
    assert lines[-1] == (f'train it: stepstone train --task toy-tags --on "{expected.on()}"' if expected.on()
                         else "best by semb: bn-tags: --on \"Stack(bn-tags)\"")


def test_cli_json_is_the_ranking(zoo, cache):
    result = cli("rank", "--target", "toy-choice", "--zoo", zoo.root, "--examples", 48, "--max-length", 96,
                 "--estimator", "semb", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert values(Ranking.from_dict(data)) == values(ranked(zoo, "toy-choice", (Estimator.SEMB,)))
    assert set(data) == {"target", "backbone", "examples", "estimators", "reductions", "notes", "rows", "ranks", "on"}
    assert data["on"] == {"semb": f"Stack({data['ranks']['semb'][0]})"}


@pytest.mark.parametrize("kind", ["lora", "ia3", "houlsby"])
def test_candidates_of_other_methods_load_score_and_leave_the_backbone_bare(zoo, cache, tmp_path, kind):
    """A LoRA / (IA)^3 / Houlsby candidate changes the features while active and is deleted afterwards: the
    bare backbone's features after it are the ones before it."""
    store = Zoo(tmp_path / "zoo")
    pipelines.train_run(RunSpec(task="toy-sentiment", name=f"{kind}-sent", method=MethodSpec(kind=kind), train=TRAIN),
                        zoo=store, runs_dir=tmp_path / "runs")
    backbone = load_backbone(BackboneSpec("tiny"))
    task = get_task("toy-pair")
    rows = handler_for(task).encode(load_examples(task, Split.TRAIN, "en", None, 32), backbone.tokenizer, task, 96,
                                    64, True)

    def features():
        return feats.labelled_features(backbone.model, handler_for(task), task.format, rows, backbone.tokenizer).features

    before = features()
    with by_kind.active(backbone.model, store.get(f"{kind}-sent")):
        during = features()
    assert not np.allclose(before, during)
    assert np.array_equal(features(), before)
    assert not backbone.model.adapters_config.adapters
    result = rank("toy-pair", zoo=store, estimators=["logme"], examples=32, train=PROXY)
    assert [r.method for r in result.rows] == [None, kind] and all(math.isfinite(r.value("logme")) for r in result.rows)


def test_the_text_embedding_reads_one_sequence_per_example():
    """Multiple choice: each example's first (context, option) pair; QA: each example's first window."""
    choice = [{"input_ids": [[0, 5, 2], [0, 6, 7, 2]], "attention_mask": [[1, 1, 1], [1, 1, 1, 1]], "labels": 1}]
    windows = [{"input_ids": [0, 1, 2], "attention_mask": [1, 1, 1], "example_index": 0},
               {"input_ids": [0, 3, 2], "attention_mask": [1, 1, 1], "example_index": 0},
               {"input_ids": [0, 4, 2], "attention_mask": [1, 1, 1], "example_index": 1}]
    sentence = [{"input_ids": [0, 9, 2], "attention_mask": [1, 1, 1], "labels": 0}]
    assert feats.first_sequences(choice) == [{"input_ids": [0, 5, 2], "attention_mask": [1, 1, 1]}]
    assert [r["input_ids"] for r in feats.first_sequences(windows)] == [[0, 1, 2], [0, 4, 2]]
    assert feats.first_sequences(sentence) == [{"input_ids": [0, 9, 2], "attention_mask": [1, 1, 1]}]


@pytest.mark.parametrize("name", ["proxy", "p" * 64])
def test_proxy_scores_candidates_of_any_valid_name(cache, tmp_path, name):
    """The target adapter's name never clashes with the member's, and a 64-character member name still fits."""
    store = Zoo(tmp_path / "zoo")
    pipelines.train_run(RunSpec(task="toy-pair", name=name, method=MethodSpec(kind="bottleneck"), train=TRAIN),
                        zoo=store, runs_dir=tmp_path / "runs")
    result = rank("toy-sentiment", zoo=store, estimators=["proxy"], examples=24, steps=2, train=PROXY)
    assert [r.candidate for r in result.rows] == [NONE, name]
    assert all(r.value("proxy") is not None for r in result.rows), [r.scores for r in result.rows]
