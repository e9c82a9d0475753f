"""The experiment grid on the tiny backbone: cells, zoo reuse, best-stack seeds, failures, resume."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stepstone.config import dump_yaml
from stepstone.errors import ConfigError, StepstoneError
from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, cells, load_grid, load_records, run_grid

SENTENCES = ["the cat sleeps", "a dog runs fast", "birds sing in spring", "we eat bread"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tatoeba = root / "target" / "tatoeba"
    tatoeba.mkdir(parents=True)
    for suffix in ("deu", "eng"):
        (tatoeba / f"tatoeba.deu-eng.{suffix}").write_text("\n".join(SENTENCES) + "\n")
    return root


def tiny_grid(data: Path, **changes) -> GridSpec:
    spec = dict(intermediate=("toy-sentiment", "toy-pair"), preset=Preset.TINY, data_dir=data, seeds=(0, 1),
                targets=(TargetSpec("toy-tags"), TargetSpec("tatoeba", split="test", langs=("de",))),
                full_after=("toy-pair",))
    spec.update(changes)
    return GridSpec(**spec)


def test_cells_of_a_grid(data):
    ids = [c.id for c in cells(tiny_grid(data))]
    assert len(ids) == len(set(ids))
    assert ids[:4] == ["intermediate/bottleneck/toy-sentiment", "intermediate/bottleneck/toy-pair",
                       "intermediate/bottleneck/multitask", "intermediate/lora/toy-sentiment"]
    assert "intermediate/full/toy-pair" in ids
    assert "target/toy-tags/lora/fuse/seed0" in ids  # Fuse over LoRA members (issue 14; AdapterFusion before)
    assert "target/toy-tags/bottleneck/fuse/seed1" in ids
    assert "target/toy-tags/full/full-after-toy-pair/seed1" in ids
    retrieval = [i for i in ids if i.startswith("retrieval/")]
    assert retrieval == ["retrieval/tatoeba/backbone"] + [f"retrieval/tatoeba/{m}/{t}" for m in ("bottleneck", "lora")
                                                          for t in ("toy-sentiment", "toy-pair", "multitask")]
    gated = [c for c in cells(tiny_grid(data)) if c.after]
    assert {c.id for c in gated} == {f"target/toy-tags/{m}/stack-{t}/seed1" for m in ("bottleneck", "lora")
                                     for t in ("toy-sentiment", "toy-pair")}


def test_grid_runs_resumes_and_records_everything(data, tmp_path):
    grid = tiny_grid(data)
    folder = tmp_path / "grid"
    first = run_grid(grid, folder, isolate=False, limit=5)  # an "interrupted" grid
    assert (first.ran, first.skipped) == (5, 0)
    assert len(load_records(folder / CELLS)) == 5
    rest = run_grid(grid, folder, isolate=False)
    assert rest.skipped == 5 and rest.failed == []
    records = load_records(folder / CELLS)
    lines = (folder / CELLS).read_text().splitlines()
    assert len(lines) == len(records) == 5 + rest.ran  # nothing ran twice
    # seed 1 ran Stack only with the intermediate whose seed-0 Stack scored best on English dev
    for method in ("bottleneck", "lora"):
        seed0 = {r["intermediate"]: r["dev"] for r in records.values()
                 if r["composition"] == "stack" and r["method"] == method and r["seed"] == 0}
        best = max(seed0, key=lambda t: (seed0[t], t))
        seed1 = [r["intermediate"] for r in records.values()
                 if r["composition"] == "stack" and r["method"] == method and r["seed"] == 1]
        assert seed1 == [best]
    target = records["target/toy-tags/bottleneck/stack-toy-pair/seed0"]
    assert target["status"] == "ok" and sorted(target["scores"]) == ["en", "xa", "xb"] and target["metric"] == "f1"
    assert target["trainable_parameters"] > 0 and target["weights_bytes"] > 0 and target["peak_rss_mb"] > 0
    for cell in (records["target/toy-tags/bottleneck/none/seed0"], records["intermediate/bottleneck/toy-pair"]):
        # the examples trained on, as the run counted them
        manifest = json.loads((folder / "zoo" / cell["artifact"] / "manifest.json").read_text())
        assert cell["train_examples"] == manifest["data"]["train_examples"] > 0
    retrieval = records["retrieval/tatoeba/backbone"]
    assert retrieval["scores"] == {"de": 100.0} and retrieval["method"] is None
    # intermediate adapters were trained once, into the grid's zoo (beside the standalone target adapters)
    intermediates = {f"{m}-{t}" for m in ("bottleneck", "lora") for t in ("toy-sentiment", "toy-pair", "multitask")}
    standalone = {f"toy-tags-{m}-none-s{s}" for m in ("bottleneck", "lora") for s in (0, 1)}
    assert {p.name for p in (folder / "zoo").iterdir()} == intermediates | standalone
    again = run_grid(grid, folder, isolate=False)
    assert (again.ran, again.skipped) == (0, len(records))


def test_failed_cell_is_recorded_and_the_grid_goes_on(data, tmp_path):
    grid = tiny_grid(data, intermediate=("toy-sentiment",), methods=("bottleneck",), seeds=(0,),
                     setups=(Setup.NONE,), full_finetune=False, full_after=(),
                     targets=(TargetSpec("pawsx"), TargetSpec("toy-tags")))
    result = run_grid(grid, tmp_path / "g", isolate=False)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == ["target/pawsx/bottleneck/none/seed0"]
    assert records["target/pawsx/bottleneck/none/seed0"]["error"].startswith("StepstoneError: no train file")
    assert records["target/toy-tags/bottleneck/none/seed0"]["status"] == "ok"
    retry = run_grid(grid, tmp_path / "g", isolate=False)
    assert retry.ran == 1 and retry.failed == ["target/pawsx/bottleneck/none/seed0"]


def test_isolated_cells_run_in_their_own_process(data, tmp_path):
    grid = tiny_grid(data, intermediate=("toy-sentiment",), methods=("bottleneck",), seeds=(0,),
                     setups=(Setup.NONE, Setup.STACK), full_finetune=False, full_after=(),
                     targets=(TargetSpec("toy-tags"),))
    result = run_grid(grid, tmp_path / "g", isolate=True)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == [] and len(records) == 3
    assert all(r["status"] == "ok" for r in records.values())


def test_a_folder_belongs_to_one_grid(data, tmp_path):
    small = tiny_grid(data, intermediate=("toy-sentiment",), methods=("bottleneck",), seeds=(0,),
                      setups=(Setup.NONE,), full_finetune=False, full_after=(), targets=(TargetSpec("toy-tags"),))
    folder = tmp_path / "g"
    run_grid(small, folder, isolate=False)
    pin = folder / "grid.yaml"
    pinned = pin.read_text()
    recorded = "target/toy-tags/bottleneck/none/seed0"
    refusals = [("is not in this one", replace(small, seeds=(5,))),  # the recorded seed-0 cell dropped
                ("is not in this one", tiny_grid(data, seeds=(5,))),  # another grid altogether
                ("would run with other settings in this one", replace(small, train={"lr": 0.05})),
                # evaluated otherwise: fewer examples per language, other languages
                ("would run with other settings in this one", replace(small, eval_examples=7)),
                ("would run with other settings in this one",
                 replace(small, targets=(TargetSpec("toy-tags", langs=("xa",)),)))]
    for why, other in refusals:
        with pytest.raises(StepstoneError) as refused:
            run_grid(other, folder, isolate=False)
        assert str(refused.value) == (f"{folder} holds a different grid ({pin}): its recorded cell {recorded} "
                                      f"{why}; use a new folder or the same spec (a changed spec may only "
                                      "add or drop cells not yet run)")
        assert pin.read_text() == pinned  # nothing re-pinned, nothing run
    # a grid that only adds cells (a second seed) continues in the folder and is pinned in the old one's place
    lines: list[str] = []
    wider = replace(small, seeds=(0, 1))
    result = run_grid(wider, folder, isolate=False, echo=lines.append)
    assert (result.ran, result.skipped) == (1, 1) and pin.read_text() == dump_yaml(wider)
    assert lines[0] == (f"{pin}: the grid changed (1 cell added, 0 dropped, none of them run yet; every recorded cell "
                        "is in it unchanged): pinned the new spec")
    # a pin this version cannot read is refused with the reason
    pin.write_text("seedz: [0]\n")
    with pytest.raises(StepstoneError, match=r"holds a different grid .*which this version cannot read \(.*seedz"):
        run_grid(small, folder, isolate=False)


def test_grid_yaml_is_strict(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("intermediate: [toy-sentiment]\ntargets:\n  - task: toy-tags\npreset: tiny\nseedz: [0]\n")
    with pytest.raises(ConfigError, match=r"grid.yaml:5: unknown key 'seedz'.*did you mean 'seeds'"):
        load_grid(path)
    path.write_text("intermediate: [toy-sentiment]\ntargets:\n  - task: toy-tags\npreset: tiny\nseeds: [0]\n")
    grid = load_grid(path, ("methods=[lora]",))
    assert grid.methods == ("lora",) and grid.targets == (TargetSpec("toy-tags"),)


def test_grid_and_report_commands(data, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stepstone_cli.main import app

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "small.yaml"
    spec.write_text(f"preset: tiny\ndata_dir: {data}\nintermediate: [toy-sentiment, toy-pair]\nseeds: [0, 1]\n"
                    "methods: [bottleneck]\nsetups: [none, stack, fuse]\nfull_finetune: false\n"
                    "targets:\n  - {task: toy-tags}\n  - {task: tatoeba, langs: [de]}\n")
    runner = CliRunner(env={"COLUMNS": "200"})
    ran = runner.invoke(app, ["grid", str(spec), "-q", "--no-isolate"])
    assert ran.exit_code == 0, ran.output
    assert "0 failed: grids/small" in ran.stdout
    again = runner.invoke(app, ["grid", str(spec), "-q", "--no-isolate"])
    assert "0 cells ran" in again.stdout
    reported = runner.invoke(app, ["report", "grids/small"])
    assert reported.exit_code == 0, reported.output
    assert "toy-tags" in reported.stdout and "best stack" in reported.stdout
    folder = tmp_path / "grids" / "small"
    assert {"report.md", "heatmap_gain.png", "lang_toy-tags.png"} <= {p.name for p in folder.iterdir()}
    assert "## " in (folder / "report.md").read_text()


def test_a_cell_line_cut_short_by_a_kill_reruns(tmp_path):
    log = tmp_path / CELLS
    log.write_text(json.dumps({"id": "a", "status": "ok"}) + "\n" + '{"id": "b", "sta')
    assert list(load_records(log)) == ["a"]
    log.write_text('{"id": "b", "sta\n' + json.dumps({"id": "a", "status": "ok"}) + "\n")
    with pytest.raises(StepstoneError, match=r"cells.jsonl:1: not a cell record"):
        load_records(log)


def test_targets_narrow_methods_setups_and_seeds(data):
    grid = tiny_grid(data, seeds=(0, 1, 2), full_after=(), single_seed=(Setup.MULTITASK,),
                     method_setups={"lora": (Setup.NONE,)},
                     targets=(TargetSpec("toy-tags"),
                              TargetSpec("toy-pair", seeds=(4,), methods=("bottleneck",),
                                         setups=(Setup.NONE, Setup.STACK), full_finetune=False,
                                         intermediates=("toy-sentiment",))))
    ids = [c.id for c in cells(grid)]
    # LoRA only trains targets alone, so no LoRA intermediate adapter is trained
    assert [i for i in ids if i.startswith("intermediate/")] == [
        "intermediate/bottleneck/toy-sentiment", "intermediate/bottleneck/toy-pair", "intermediate/bottleneck/multitask"]
    tags = [i.removeprefix("target/toy-tags/") for i in ids if i.startswith("target/toy-tags/")]
    assert [t for t in tags if "multitask" in t] == ["bottleneck/multitask/seed0"]  # single_seed
    assert [t for t in tags if t.startswith("lora/")] == [f"lora/none/seed{s}" for s in (0, 1, 2)]
    assert [t for t in tags if t.startswith("full/")] == [f"full/full/seed{s}" for s in (0, 1, 2)]
    assert len([t for t in tags if "/fuse/" in t]) == 3
    pair = [i.removeprefix("target/toy-pair/") for i in ids if i.startswith("target/toy-pair/")]
    assert pair == ["bottleneck/none/seed4", "bottleneck/stack-toy-sentiment/seed4"]


def test_a_targets_intermediates_are_what_its_stack_fuse_and_average_cells_compose(data):
    grid = tiny_grid(data, intermediate=("toy-sentiment", "toy-pair", "toy-qa"), seeds=(0,), full_after=(),
                     setups=(Setup.NONE, Setup.STACK, Setup.FUSE, Setup.AVERAGE, Setup.MULTITASK),
                     method_setups={"lora": (Setup.NONE, Setup.FUSE)},
                     targets=(TargetSpec("toy-tags", intermediates=("toy-sentiment", "toy-pair")),
                              TargetSpec("toy-pair", intermediates=("toy-sentiment",))))
    planned = {c.id: c for c in cells(grid)}
    for method in ("bottleneck", "lora"):  # never the adapter of a task the target leaves out
        assert planned[f"target/toy-tags/{method}/fuse/seed0"].spec.compose.members == (
            f"{method}-toy-sentiment", f"{method}-toy-pair")
    assert planned["target/toy-tags/bottleneck/average/seed0"].spec.compose.members == (
        "bottleneck-toy-sentiment", "bottleneck-toy-pair")
    multitask = planned["intermediate/bottleneck/multitask"].spec.task  # one adapter on the grid's tasks
    assert multitask == ("toy-sentiment", "toy-pair", "toy-qa")
    pair = sorted(i.removeprefix("target/toy-pair/") for i in planned if i.startswith("target/toy-pair/"))
    # one intermediate: nothing to fuse or average
    assert pair == ["bottleneck/multitask/seed0", "bottleneck/none/seed0", "bottleneck/stack-toy-sentiment/seed0",
                    "full/full/seed0", "lora/none/seed0"]
    # an intermediate adapter no cell composes is not trained: toy-qa's (its multitask data stays)
    assert [i for i in planned if i.startswith("intermediate/")] == [
        "intermediate/bottleneck/toy-sentiment", "intermediate/bottleneck/toy-pair",
        "intermediate/bottleneck/multitask", "intermediate/lora/toy-sentiment", "intermediate/lora/toy-pair"]
    retrieval = tiny_grid(data, intermediate=("toy-sentiment", "toy-pair", "toy-qa"), seeds=(0,), full_after=(),
                          targets=(TargetSpec("toy-tags", intermediates=("toy-sentiment", "toy-pair")),
                                   TargetSpec("tatoeba", split="test", langs=("de",))))
    assert "intermediate/bottleneck/toy-qa" in [c.id for c in cells(retrieval)]  # retrieval evaluates every one


def test_a_target_may_not_name_a_method_the_grid_does_not_train(data):
    with pytest.raises(ValueError, match="target 'toy-tags' names methods the grid does not train: lora"):
        tiny_grid(data, methods=("bottleneck",), targets=(TargetSpec("toy-tags", methods=("lora",)),))
    with pytest.raises(ValueError, match="target 'toy-tags' stacks tasks that are not intermediate tasks: ghost"):
        tiny_grid(data, targets=(TargetSpec("toy-tags", intermediates=("ghost",)),))
    with pytest.raises(ValueError, match="no_dev names tasks that are not intermediate tasks: ghost"):
        tiny_grid(data, no_dev=("ghost",))


def test_no_dev_intermediates_train_without_dev(data):
    grid = tiny_grid(data, no_dev=("toy-pair",), full_after=())
    specs = {c.id: c.spec.train for c in cells(grid) if c.kind == "intermediate"}
    assert specs["intermediate/bottleneck/toy-sentiment"].dev
    assert not specs["intermediate/bottleneck/toy-pair"].dev and not specs["intermediate/bottleneck/toy-pair"].select_best
    assert not specs["intermediate/bottleneck/multitask"].dev  # one of its tasks has no dev data


def test_eval_examples_overrides_the_preset(data):
    assert tiny_grid(data).eval_limit == 16
    assert tiny_grid(data, eval_examples=3).eval_limit == 3


# ---- setups that expand to no cell (issue 13)
GRID_HEAD = "preset: tiny\nseeds: [0]\ntargets: [{task: toy-tags}]\n"


@pytest.mark.parametrize("text, message", [
    ("intermediate: [toy-sentiment]\nsetups: [none, fuse]\n",
     "g.yaml:5: setups lists 'fuse', which makes no cell: for bottleneck and lora, fuse needs at least two "
     "intermediate tasks (intermediate: toy-sentiment)"),
    ("intermediate: [toy-sentiment]\nsetups: [multitask]\n",
     "g.yaml:5: setups lists 'multitask', which makes no cell: for bottleneck and lora, multitask needs at least two "
     "intermediate tasks (intermediate: toy-sentiment)"),
    ("intermediate: []\nsetups: [stack]\n",
     "g.yaml:5: setups lists 'stack', which makes no cell: for bottleneck and lora, stack needs an intermediate task "
     "(intermediate is empty)"),
    ("intermediate: [toy-sentiment]\nmethod_setups:\n  lora: [none, fuse]\n",
     "g.yaml:6: method_setups.lora lists 'fuse', which makes no cell: fuse needs at least two intermediate tasks "
     "(intermediate: toy-sentiment)"),
    ("intermediate: [toy-sentiment]\nsetups: [none]\nfull_after: [toy-pair]\nfull_finetune: false\n",
     "g.yaml:6: full_after trains full fine-tunes for the full fine-tune baseline, but no target runs one "
     "(full_finetune is false)"),
    ("intermediate: [toy-sentiment]\nsingle_seed: [fuse]\nsetups: [none, stack]\n",
     "g.yaml:5: single_seed lists 'fuse', which no method of the grid runs"),
    ("intermediate: [toy-qa]\nsetups: [none, stack]\ntrain: {max_length: 32}\n",
     "g.yaml:6: train.doc_stride (64) must be smaller than train.max_length (32): QA windows of max_length tokens "
     "overlap by doc_stride tokens (QA tasks of the grid: toy-qa)"),
], ids=["fuse-of-one", "multitask-of-one", "stack-of-none", "method-setups-fuse-of-one",
        "full-after-without-full", "single-seed-unused", "qa-stride-over-max-length"])
def test_a_listed_setting_that_makes_no_cell_is_refused(tmp_path, text, message):
    path = tmp_path / "g.yaml"
    path.write_text(GRID_HEAD + text)
    with pytest.raises(ConfigError) as caught:
        load_grid(path)
    assert str(caught.value) == str(path.parent / message)


@pytest.mark.parametrize("text", ["intermediate: [toy-sentiment, toy-pair]\nmethods: [lora]\nsetups: [fuse]\n",
                                  "intermediate: [toy-sentiment, toy-pair]\nmethod_setups:\n  lora: [none, fuse]\n"],
                         ids=["lora-fuse", "method-setups-lora-fuse"])
def test_lora_fuse_makes_fuse_over_lora_cells(tmp_path, text):
    """Refused until issue 14 (AdapterFusion is bottleneck-only); the capability table now gives Fuse over LoRA
    members, and the grid expands what the table allows."""
    path = tmp_path / "g.yaml"
    path.write_text(GRID_HEAD + text)
    fused = [c for c in cells(load_grid(path)) if c.id.startswith("target/toy-tags/lora/fuse/")]
    assert [c.id for c in fused] == ["target/toy-tags/lora/fuse/seed0"]
    compose = fused[0].spec.compose
    assert (compose.block.value, compose.members) == ("fuse", ("lora-toy-sentiment", "lora-toy-pair"))


def problems_of(path, text: str) -> list[str]:
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_grid(path)
    return caught.value.problems


def test_target_settings_that_make_no_cell_are_refused(tmp_path):
    path = tmp_path / "g.yaml"
    head = "preset: tiny\nseeds: [0]\nintermediate: [toy-sentiment, toy-pair]\n"
    assert problems_of(path, head + "setups: [none, stack]\n"
                       "targets:\n  - {task: toy-tags, setups: [none, fuse]}\n  - {task: toy-pair, setups: [none], "
                       "intermediates: [toy-sentiment]}\n  - {task: tatoeba, methods: [lora], seeds: [1]}\n") == [
        f"{path}:6: target 'toy-tags' lists setup 'fuse', which makes no cell: the grid's setups for its methods "
        "leave it out (bottleneck: none, stack, lora: none, stack)",
        f"{path}:7: target 'toy-pair' narrows its compositions to intermediates, but it runs no stack, fuse or "
        "average setup",
        f"{path}:8: target 'tatoeba' is a retrieval task (evaluated with the intermediate adapters, never trained): "
        "methods, seeds do not apply to it"]
    # a target's Fuse takes its own intermediates: one is nothing to fuse
    assert problems_of(path, head + "methods: [bottleneck]\n"
                       "targets:\n  - {task: toy-tags, setups: [none, fuse], intermediates: [toy-pair]}\n") == [
        f"{path}:6: target 'toy-tags' lists setup 'fuse', which makes no cell: for bottleneck, fuse needs at least "
        "two intermediate tasks (target 'toy-tags' intermediates: toy-pair)",
        f"{path}:6: target 'toy-tags' narrows its compositions to intermediates, but it runs no stack, fuse or "
        "average setup"]


def test_grid_values_that_would_fail_later_are_refused_up_front(data):
    cases = [
        (lambda: TargetSpec("toy-tags", methods=()),
         "target 'toy-tags' has an empty methods list: omit it for all of the grid's methods"),
        (lambda: TargetSpec("toy-tags", intermediates=()),
         "target 'toy-tags' has an empty intermediates list: omit it for all of the grid's intermediate tasks"),
        (lambda: TargetSpec("toy-tags", split="dev"),
         "target 'toy-tags': split must be one of: test, train, validation (got 'dev')"),
        (lambda: TargetSpec("toy-tags", train_split="test"),
         "target 'toy-tags': train_split must be train or validation (got 'test')"),
        (lambda: tiny_grid(data, intermediate_splits={"ghost": "validation"}),
         "intermediate_splits names tasks that are not intermediate tasks: ghost (intermediate: toy-sentiment, "
         "toy-pair)"),
        (lambda: tiny_grid(data, intermediate_splits={"toy-pair": "dev"}),
         "intermediate_splits must be train or validation (got toy-pair: dev)"),
        (lambda: tiny_grid(data, methods=("bottleneck",), method_setups={"lora": (Setup.NONE,)}),
         "method_setups names methods the grid does not train: lora (grid methods: bottleneck)"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError) as caught:
            make()
        assert str(caught.value) == message


def test_run_grid_refuses_before_writing(data, tmp_path):
    grid = tiny_grid(data, intermediate=("toy-sentiment",), setups=(Setup.FUSE,), full_after=())
    with pytest.raises(ConfigError, match=r"^setups lists 'fuse', which makes no cell: for bottleneck and lora, fuse "
                                          r"needs"):
        run_grid(grid, tmp_path / "grid", isolate=False)
    grid = tiny_grid(data, full_after=(), train={"lrr": 1.0})
    with pytest.raises(ConfigError, match=r"^grid train settings: unknown key 'lrr'"):
        run_grid(grid, tmp_path / "grid", isolate=False)
    assert not (tmp_path / "grid").exists()
    # the default setups mean every setup that applies: one intermediate runs none and stack only
    ids = [c.id for c in cells(tiny_grid(data, intermediate=("toy-sentiment",), full_after=(), full_finetune=False,
                                         methods=("bottleneck",), targets=(TargetSpec("toy-tags"),)))]
    assert ids == ["intermediate/bottleneck/toy-sentiment", "target/toy-tags/bottleneck/none/seed0",
                   "target/toy-tags/bottleneck/stack-toy-sentiment/seed0", "target/toy-tags/bottleneck/none/seed1",
                   "target/toy-tags/bottleneck/stack-toy-sentiment/seed1"]


# ---- training settings per task family (issue 13)
FAMILY_GRID = """preset: tiny
intermediate: [toy-sentiment, toy-tags]
methods: [bottleneck]
setups: [none, stack, multitask]
seeds: [0]
targets: [{task: toy-pair}, {task: toy-tags}]
train: {epochs: 2}
train_by_format:
  classification: {lr: 1e-3}
  tagging: {lr: 4e-3}
full_train_by_format: {tagging: {lr: 2e-4}}
"""


def lrs(grid: GridSpec) -> dict[str, tuple[float, int]]:
    return {c.id: (c.spec.train.lr, c.spec.train.epochs) for c in cells(grid) if c.spec is not None}


def test_train_settings_per_task_family(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(FAMILY_GRID + "multitask_train: {lr: 2e-3}\n")
    got = lrs(load_grid(path))
    assert got == {"intermediate/bottleneck/toy-sentiment": (1e-3, 2), "intermediate/bottleneck/toy-tags": (4e-3, 2),
                   "intermediate/bottleneck/multitask": (2e-3, 2),
                   **{f"target/toy-pair/bottleneck/{s}/seed0": (1e-3, 2) for s in
                      ("none", "stack-toy-sentiment", "stack-toy-tags", "multitask")},
                   **{f"target/toy-tags/bottleneck/{s}/seed0": (4e-3, 2) for s in
                      ("none", "stack-toy-sentiment", "stack-toy-tags", "multitask")},
                   "target/toy-pair/full/full/seed0": (1e-3, 2),  # the tiny preset's full fine-tune lr
                   "target/toy-tags/full/full/seed0": (2e-4, 2)}
    # a multitask adapter over families whose settings differ must be told which to use
    path.write_text(FAMILY_GRID)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert str(err.value) == (f"{path}:2: the multitask adapter trains tasks of families whose training settings "
                              "differ (lr: classification 0.001, tagging 0.004): set lr in multitask_train")


def test_train_settings_per_family_are_checked_with_file_and_line(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(FAMILY_GRID.replace("tagging: {lr: 4e-3}", "tagging: {lrr: 4e-3}"))
    with pytest.raises(ConfigError, match=rf"^{path}:10: unknown key 'train_by_format.tagging.lrr' \(valid: .*\), "
                                          "did you mean 'lr'\\?$"):
        load_grid(path)
    path.write_text(FAMILY_GRID.replace("tagging: {lr: 4e-3}", "tagging: {lr: -1}"))
    with pytest.raises(ConfigError, match=rf"^{path}:10: 'train_by_format.tagging': lr must be > 0$"):
        load_grid(path)
    path.write_text(FAMILY_GRID.replace("  tagging: {lr: 4e-3}", "  tags: {lr: 4e-3}"))
    with pytest.raises(ConfigError, match=rf"^{path}:10: 'train_by_format.tags' must be one of: classification, "
                                          r"multiple_choice, qa, retrieval, tagging \(got 'tags'\)$"):
        load_grid(path)
    path.write_text(FAMILY_GRID.replace("  tagging: {lr: 4e-3}", "  retrieval: {lr: 4e-3}"))
    with pytest.raises(ConfigError, match=r"train_by_format / full_train_by_format: retrieval tasks are not trained "
                                          r"\(valid: classification, tagging, qa, multiple_choice\)$"):
        load_grid(path)


def test_presets_calibrate_training_per_task_family():
    from stepstone.experiments import FAMILIES, PRESETS
    from stepstone.tasks import TaskFormat

    grid = GridSpec(intermediate=("sst2", "copa", "tydiqa"), preset=Preset.CPU_SMALL, seeds=(0,),
                    methods=("bottleneck",), setups=(Setup.NONE, Setup.STACK),
                    targets=(TargetSpec("udpos"), TargetSpec("xnli"), TargetSpec("panx", full_finetune=False)))
    got = {c.id: c.spec.train.lr for c in cells(grid) if c.spec is not None and "stack" not in c.id}
    assert got == {"intermediate/bottleneck/sst2": 1e-3, "intermediate/bottleneck/copa": 1e-3,
                   "intermediate/bottleneck/tydiqa": 1e-3, "target/udpos/bottleneck/none/seed0": 5e-3,
                   "target/udpos/full/full/seed0": 3e-4, "target/xnli/bottleneck/none/seed0": 1e-3,
                   "target/xnli/full/full/seed0": 3e-4, "target/panx/bottleneck/none/seed0": 5e-3}
    assert FAMILIES[Preset.CPU_SMALL] == {TaskFormat.TAGGING: ({"lr": 5e-3}, {})}
    assert PRESETS[Preset.CPU_SMALL][1].lr == 1e-3
    # the committed grids load; the cpu-small file states the preset's rates, the paper's trains QA on 384 tokens
    root = Path(__file__).resolve().parents[2] / "benchmarks" / "grids"
    small = load_grid(root / "cpu-small.yaml")
    assert {f.value: o for f, o in small.train_by_format.items()} == {
        "classification": {"lr": 1e-3}, "multiple_choice": {"lr": 1e-3}, "qa": {"lr": 1e-3}, "tagging": {"lr": 5e-3}}
    paper = {c.id: (c.spec.train.max_length, c.spec.train.doc_stride) for c in cells(load_grid(root / "paper.yaml"))
             if c.spec is not None}
    assert paper["intermediate/bottleneck/squad"] == paper["target/xquad/bottleneck/none/seed0"] == (384, 128)
    assert paper["intermediate/bottleneck/mnli"] == paper["target/xnli/full/full/seed0"] == (256, 64)
    assert paper["intermediate/bottleneck/multitask"] == (384, 128)  # multitask_train settles the mix
    # issue 18's study and its paper-scale twin (the code-switching lexicon is built locally: typo noise instead)
    medium = {c.id: c for c in cells(load_grid(root / "cpu-medium.yaml", ("perturb=[typo:0.1]",)))}
    e5 = "multilingual-e5-small/"
    train = {i: (t.max_train_examples, t.epochs, t.lr) for i, t in
             ((i, medium[e5 + i].spec.train) for i in ("intermediate/bottleneck/sst2", "intermediate/bottleneck/anli",
                                                       "target/udpos/bottleneck/none/seed2", "target/xnli/full/full/seed0",
                                                       "target/panx/bottleneck/stack-udpos/seed0"))}
    assert train == {"intermediate/bottleneck/sst2": (5000, 1, 1e-3), "intermediate/bottleneck/anli": (2900, 1, 1e-3),
                     "target/udpos/bottleneck/none/seed2": (1000, 3, 5e-3), "target/xnli/full/full/seed0": (1000, 3, 1e-4),
                     "target/panx/bottleneck/stack-udpos/seed0": (1000, 3, 5e-3)}
    assert any(i.startswith("tiny/target/") for i in medium) and not any("/pawsx/" in i for i in medium)
    big = {c.id: c.spec.train.max_train_examples
           for c in cells(load_grid(root / "paper-medium.yaml", ("perturb=[typo:0.1]",))) if c.spec is not None}
    assert big["xlm-roberta-large/intermediate/bottleneck/mnli"] is None  # all of MNLI
    assert big["xlm-roberta-large/target/xnli/bottleneck/none/seed0"] == 1000  # the target trained on MNLI: 1,000


def test_target_languages_are_the_benchmarks_list(tmp_path):
    """A target without `langs` is evaluated in the benchmark's languages that have a file, as `stepstone evaluate`
    is: not the further ones its source has (XQuAD's ro, MLQA's 42 language pairs), which would enter the mean."""
    from stepstone.experiments.run import _languages
    from stepstone.tasks import Split, get_task

    xquad, mlqa = get_task("xquad"), get_task("mlqa")
    assert _languages(xquad, Split.TEST, None) == ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
    assert _languages(mlqa, Split.TEST, None) == ["ar", "de", "en", "es", "hi", "vi", "zh"]
    folder = tmp_path / "target" / "xquad"
    folder.mkdir(parents=True)
    for lang in ("ro", "de", "en"):
        (folder / f"xquad.{lang}.json").write_text('{"data": []}')
    assert _languages(xquad, Split.TEST, tmp_path) == ["de", "en"]
    # English dev borrowed from SQuAD's file, as evaluate reads it (XQuAD has no validation files of its own)
    (tmp_path / "intermediate" / "squad").mkdir(parents=True)
    (tmp_path / "intermediate" / "squad" / "dev.json").write_text('{"data": []}')
    assert _languages(xquad, Split.VALIDATION, tmp_path) == ["en"]
