"""Issue 16's grid axes on the tiny backbone: sequential chains, intermediate data sizes, several backbones,
perturbed and out-of-domain evaluations (planning, checks, and small runs)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepstone.config import dump_yaml
from stepstone.errors import ConfigError
from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, cells, load_grid, load_records, run_grid
from stepstone.specs import BackboneSpec, Block


def grid(**changes) -> GridSpec:
    spec = dict(intermediate=("toy-sentiment", "toy-pair"), preset=Preset.TINY, seeds=(0,), methods=("bottleneck",),
                setups=(Setup.NONE, Setup.STACK), full_finetune=False, targets=(TargetSpec("toy-tags"),))
    spec.update(changes)
    return GridSpec(**spec)


def by_id(spec: GridSpec) -> dict:
    return {c.id: c for c in cells(spec)}


def test_a_chain_trains_each_step_from_the_one_before():
    planned = by_id(grid(sequential=(("toy-sentiment", "toy-pair", "toy-qa"), ("toy-qa", "toy-sentiment"))))
    steps = [i for i in planned if i.startswith("intermediate/")]
    # the grid's own toy-sentiment adapter starts the first chain; toy-qa (not an intermediate task) is trained
    assert steps == ["intermediate/bottleneck/toy-sentiment", "intermediate/bottleneck/toy-pair",
                     "intermediate/bottleneck/toy-sentiment-then-toy-pair",
                     "intermediate/bottleneck/toy-sentiment-then-toy-pair-then-toy-qa",
                     "intermediate/bottleneck/toy-qa", "intermediate/bottleneck/toy-qa-then-toy-sentiment"]
    last = planned["intermediate/bottleneck/toy-sentiment-then-toy-pair-then-toy-qa"]
    assert last.spec.task == ("toy-qa",) and last.spec.name == "bottleneck-toy-sentiment-then-toy-pair-then-toy-qa"
    assert last.spec.init_from == Path("bottleneck-toy-sentiment-then-toy-pair")  # a zoo entry of the grid
    assert last.record.chain == ["toy-sentiment", "toy-pair", "toy-qa"] and last.record.task == "toy-qa"
    assert planned["intermediate/bottleneck/toy-qa"].spec.init_from is None
    target = planned["target/toy-tags/bottleneck/sequential-toy-qa-then-toy-sentiment/seed0"]
    assert target.spec.compose.block is Block.STACK
    assert target.spec.compose.members == ("bottleneck-toy-qa-then-toy-sentiment",)
    assert (target.record.composition, target.record.intermediate, target.record.chain) == (
        Setup.SEQUENTIAL, "toy-qa-then-toy-sentiment", ["toy-qa", "toy-sentiment"])


def test_sized_intermediate_adapters_train_on_that_many_examples():
    planned = by_id(grid(intermediate_sizes={"toy-pair": (8, 16)}, seeds=(0, 1), single_seed=(Setup.SIZE,)))
    sized = planned["intermediate/bottleneck/toy-pair-n8"]
    assert sized.spec.train.max_train_examples == 8 and sized.spec.name == "bottleneck-toy-pair-n8"
    assert sized.record.intermediate_size == 8 and sized.record.task == "toy-pair"
    assert planned["intermediate/bottleneck/toy-pair"].spec.train.max_train_examples == 32  # the preset's
    targets = sorted(i for i in planned if "stack-size" in i)
    assert targets == ["target/toy-tags/bottleneck/stack-size-toy-pair-n16/seed0",
                       "target/toy-tags/bottleneck/stack-size-toy-pair-n8/seed0"]  # single_seed: the first seed
    cell = planned["target/toy-tags/bottleneck/stack-size-toy-pair-n16/seed0"]
    assert cell.spec.compose.members == ("bottleneck-toy-pair-n16",)
    assert (cell.record.composition, cell.record.intermediate, cell.record.intermediate_size) == (
        Setup.SIZE, "toy-pair", 16)
    every = by_id(grid(intermediate_sizes=(8,)))  # a list: every intermediate task
    assert {"intermediate/bottleneck/toy-sentiment-n8", "intermediate/bottleneck/toy-pair-n8"} <= set(every)


def test_a_target_that_lists_setups_runs_the_axes_only_where_it_lists_them():
    chains, sizes = (("toy-sentiment", "toy-pair"),), {"toy-pair": (8,), "toy-sentiment": (8,)}
    planned = by_id(grid(sequential=chains, intermediate_sizes=sizes, targets=(
        TargetSpec("toy-tags", setups=(Setup.NONE, Setup.SEQUENTIAL)),
        TargetSpec("toy-qa", setups=(Setup.NONE, Setup.STACK, Setup.SIZE), intermediates=("toy-pair",)),
        TargetSpec("toy-choice", setups=(Setup.NONE, Setup.STACK)))))
    axis = sorted(i for i in planned if "sequential" in i or "stack-size" in i)
    assert axis == ["target/toy-qa/bottleneck/stack-size-toy-pair-n8/seed0",
                    "target/toy-tags/bottleneck/sequential-toy-sentiment-then-toy-pair/seed0"]
    # the sized adapters no target stacks are not trained (toy-qa stacks toy-pair only)
    assert "intermediate/bottleneck/toy-pair-n8" in planned and "intermediate/bottleneck/toy-sentiment-n8" not in planned
    unlisted = by_id(grid(sequential=chains, intermediate_sizes=sizes,
                          targets=(TargetSpec("toy-tags", setups=(Setup.NONE, Setup.STACK)), TargetSpec("toy-qa"))))
    assert not [i for i in unlisted if "toy-tags" in i and ("sequential" in i or "stack-size" in i)]
    assert "target/toy-qa/bottleneck/sequential-toy-sentiment-then-toy-pair/seed0" in unlisted  # no setups: all


def test_every_record_names_its_backbone_and_several_backbones_split_the_grid(tmp_path):
    assert {c.record.backbone for c in cells(grid())} == {"tiny"}
    other = tmp_path / "tiny-copy"
    planned = by_id(grid(backbones=(BackboneSpec("tiny"), BackboneSpec(str(other))), seeds=(0, 1)))
    assert {i.split("/")[0] for i in planned} == {"tiny", "tiny-copy"}
    cell = planned["tiny-copy/target/toy-tags/bottleneck/stack-toy-pair/seed1"]
    assert cell.spec.backbone.name == str(other) and cell.record.backbone == str(other)
    assert cell.spec.compose.members == ("tiny-copy-bottleneck-toy-pair",)
    assert cell.spec.name == "tiny-copy-toy-tags-bottleneck-stack-toy-pair-s1"
    assert cell.after == "tiny-copy/best-stack/toy-tags/bottleneck" and cell.prefix == "tiny-copy/"
    assert planned["tiny/intermediate/bottleneck/toy-pair"].spec.name == "tiny-bottleneck-toy-pair"


def test_the_new_keys_are_pinned_only_where_set():
    plain = dump_yaml(grid())
    assert not any(key in plain for key in ("sequential", "intermediate_sizes", "backbones", "perturb", "data_files"))
    assert "sequential:\n- - toy-sentiment\n  - toy-pair\n" in dump_yaml(grid(sequential=(("toy-sentiment",
                                                                                          "toy-pair"),)))


BASE = """\
preset: tiny
intermediate: [toy-sentiment, toy-pair]
methods: [bottleneck]
seeds: [0]
setups: [none, stack]
full_finetune: false
targets:
  - {task: toy-tags}
"""


@pytest.mark.parametrize("extra, message", [
    ("sequential: [[toy-sentiment]]\n", r":9: a sequential chain needs at least two tasks"),
    ("sequential: [[toy-sentiment, toy-pair, toy-sentiment]]\n", r":9: sequential chain .* trains a task twice"),
    ("sequential: [[toy-sentiment, tatoeba]]\n", r":9: sequential chain .*: tatoeba is a retrieval task"),
    ("sequential:\n  - [toy-sentiment, toy-pear]\n",
     r":10: unknown task 'toy-pear' in 'sequential\[0\]\[1\]' .*did you mean 'toy-pair'"),
    ("intermediate_sizes: [0, 8]\n", r":9: intermediate_sizes must be at least 1 \(got 0\)"),
    ("intermediate_sizes: {toy-qa: [8]}\n", r":9: intermediate_sizes names 'toy-qa', which is not an intermediate"),
    ("backbones: [{name: tiny}, {name: tiny}]\n", r":9: backbones share a name \(tiny\)"),
    ("backbone: {name: tiny}\nbackbones: [{name: tiny}]\n", r"give backbone \(one\) or backbones \(several\), not both"),
    ("perturb_seed: 3\n", r":9: perturb_seed is set, but perturb lists no perturbation"),
    ("intermediate_train: {toy-qa: {epochs: 2}}\n",
     r":9: intermediate_train names 'toy-qa', which the grid does not train as an intermediate task \(intermediate: "
     r"toy-pair, toy-sentiment\)"),
    ("intermediate_train: {toy-pear: {epochs: 2}}\n",
     r":9: unknown task 'toy-pear' in 'intermediate_train.toy-pear'.*toy-pair"),
    ("intermediate_train: {toy-pair: {epoch: 2}}\n", r":9: .*epoch"),
    ("perturb_seeds: [0]\n", r":9: perturb_seeds is set, but perturb lists no perturbation"),
    ("perturb: [typo:0.1]\nperturb_seeds: [0, 5]\n", r":10: perturb_seeds names seeds no target cell runs: 5 "
                                                      r"\(seeds: 0\)"),
    ("perturb_setups: [none]\n", r":9: perturb_setups is set, but perturb lists no perturbation"),
    ("perturb: [typo:0.1]\nperturb_setups: [none, fuse]\n",
     r":10: perturb_setups names setups no target cell runs: fuse \(run: none, stack\)"),
    ("perturb: [typo:0.1]\nperturb_setups: [nothing]\n", r":10: .*perturb_setups.*nothing"),
    ("perturb: [typo:abc]\n", r":9: perturbation 'typo:abc': rate 'abc' is not a number \(RATE from 0 to 1\)$"),
    ("perturb: [blur:0.1]\n", r":9: perturbation 'blur:0.1': unknown perturbation 'blur' \(valid: codeswitch, "
                               r"dropout, typo\)"),
    ("method_setups: {bottleneck: [none, sequential]}\n",
     r":9: method_setups.bottleneck lists 'sequential', which makes no cell: sequential needs sequential chains "
     r"\(the grid has none\)"),
    ("method_setups: {bottleneck: [none, stack-size]}\nsequential: [[toy-sentiment, toy-pair]]\n",
     r":9: method_setups.bottleneck lists 'stack-size', which makes no cell: stack-size needs intermediate_sizes"),
    ("method_setups: {bottleneck: [none, stack]}\nsequential: [[toy-sentiment, toy-pair]]\n",
     r":10: sequential makes no cell: method_setups leaves 'sequential' out for every method Stack composes "
     r"\(bottleneck\); list it there"),
])
def test_bad_axis_settings_are_refused_with_file_and_line(tmp_path, extra, message):
    path = tmp_path / "grid.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError, match=message):
        load_grid(path)


@pytest.mark.parametrize("target, extra, message", [
    ("{task: toy-tags, setups: [none, stack]}", "sequential: [[toy-sentiment, toy-pair]]\n",
     r":9: sequential makes no cell: no trained target runs 'sequential' \(a target that lists setups runs it only "
     r"where it lists it\)$"),
    ("{task: toy-tags, setups: [none, sequential]}", "",
     r":8: target 'toy-tags' lists setup 'sequential', which makes no cell: for bottleneck, sequential needs "
     r"sequential chains \(the grid has none\)$"),
    ("{task: toy-tags, intermediates: [toy-pair]}", "intermediate_sizes: {toy-sentiment: [8]}\n",
     r":9: intermediate_sizes names 'toy-sentiment', which no target that runs stack-size stacks \(those targets: "
     r"toy-tags; each stacks its intermediates\)$"),
], ids=["chain-no-target-runs", "target-axis-without-chains", "size-no-target-stacks"])
def test_axis_settings_the_targets_leave_idle_are_refused(tmp_path, target, extra, message):
    path = tmp_path / "grid.yaml"
    path.write_text(BASE.replace("{task: toy-tags}", target) + extra)
    with pytest.raises(ConfigError, match=message):
        load_grid(path)


def test_a_size_larger_than_the_data_is_refused(tmp_path):
    data = tmp_path / "data"
    folder = data / "intermediate" / "sst2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"good film {i}\t1\n" for i in range(5)))
    path = tmp_path / "grid.yaml"
    path.write_text(BASE.replace("[toy-sentiment, toy-pair]", "[sst2, toy-pair]")
                    + f"data_dir: {data}\nintermediate_sizes:\n  sst2: [3, 8]\n")
    with pytest.raises(ConfigError, match=r"grid.yaml:11: intermediate_sizes: 8 examples of 'sst2' asked for, "
                                          r"but its train data has 5$"):
        load_grid(path)


def test_a_missing_data_file_is_refused(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(BASE.replace("{task: toy-tags}", f"{{task: toy-tags, data_files: [{tmp_path / 'nope.tsv'}]}}"))
    with pytest.raises(ConfigError, match=r"grid.yaml:8: target 'toy-tags': data file '.*nope.tsv' not found"):
        load_grid(path)


def test_a_sized_grid_runs_and_records_sizes(tmp_path):
    spec = grid(intermediate=("toy-pair",), intermediate_sizes=(8,))
    result = run_grid(spec, tmp_path / "g", isolate=False)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == []
    sized = records["intermediate/bottleneck/toy-pair-n8"]
    assert sized["intermediate_size"] == 8 and sized["backbone"] == "tiny"
    manifest = json.loads((tmp_path / "g" / "zoo" / "bottleneck-toy-pair-n8" / "manifest.json").read_text())
    assert manifest["data"]["train_examples"] == 8
    target = records["target/toy-tags/bottleneck/stack-size-toy-pair-n8/seed0"]
    assert target["status"] == "ok" and target["composition"] == "stack-size" and target["intermediate_size"] == 8
    assert set(target["secondary"]) == {"precision", "recall"}  # toy-tags: seqeval f1 main


def test_two_backbones_run_side_by_side(tmp_path):
    from stepstone.backbone import load_backbone

    other = tmp_path / "tiny-copy"
    tiny = load_backbone(BackboneSpec("tiny"))
    tiny.model.save_pretrained(str(other))
    tiny.tokenizer.save_pretrained(str(other))
    spec = grid(intermediate=("toy-pair",), backbones=(BackboneSpec("tiny"), BackboneSpec(str(other))))
    result = run_grid(spec, tmp_path / "g", isolate=False)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == [] and len(records) == 6
    assert {r["backbone"] for r in records.values()} == {"tiny", str(other)}
    assert sorted(p.name for p in (tmp_path / "g" / "zoo").iterdir()) == [
        "tiny-bottleneck-toy-pair", "tiny-copy-bottleneck-toy-pair", "tiny-copy-toy-tags-bottleneck-none-s0",
        "tiny-toy-tags-bottleneck-none-s0"]
    stacked = json.loads((tmp_path / "g" / "runs" / "tiny-copy-toy-tags-bottleneck-stack-toy-pair-s0"
                          / "manifest.json").read_text())
    assert stacked["backbone"]["name"] == str(other)


def test_a_sequential_grid_runs_each_chain_from_its_first_adapter(tmp_path):
    spec = grid(intermediate=("toy-sentiment",), sequential=(("toy-sentiment", "toy-pair"),), setups=(Setup.NONE,))
    result = run_grid(spec, tmp_path / "g", isolate=False)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == []
    assert sorted(records) == ["intermediate/bottleneck/toy-sentiment", "intermediate/bottleneck/toy-sentiment-then-toy-pair",
                               "target/toy-tags/bottleneck/none/seed0",
                               "target/toy-tags/bottleneck/sequential-toy-sentiment-then-toy-pair/seed0"]
    chained = json.loads((tmp_path / "g" / "zoo" / "bottleneck-toy-sentiment-then-toy-pair" / "manifest.json").read_text())
    assert chained["chain"] == ["toy-sentiment", "toy-pair"]
    assert chained["init_from"] == {"path": str(tmp_path / "g" / "zoo" / "bottleneck-toy-sentiment"),
                                    "name": "bottleneck-toy-sentiment"}
    target = records["target/toy-tags/bottleneck/sequential-toy-sentiment-then-toy-pair/seed0"]
    assert target["status"] == "ok" and target["chain"] == ["toy-sentiment", "toy-pair"]
    assert target["intermediate"] == "toy-sentiment-then-toy-pair" and target["composition"] == "sequential"


def test_method_setups_choose_the_methods_of_the_chains_and_sizes():
    both = dict(methods=("bottleneck", "lora"), sequential=(("toy-sentiment", "toy-pair"),),
                intermediate_sizes={"toy-pair": (8,)})
    ids = list(by_id(grid(**both, method_setups={"lora": (Setup.NONE, Setup.STACK)})))
    # LoRA named in method_setups without the axes: no LoRA chain or sized adapter, no LoRA chain or sized cell
    assert not [i for i in ids if i.startswith(("intermediate/lora/", "target/toy-tags/lora/"))
                and ("-then-" in i or "-n8" in i)]
    assert "target/toy-tags/bottleneck/sequential-toy-sentiment-then-toy-pair/seed0" in ids
    assert "target/toy-tags/bottleneck/stack-size-toy-pair-n8/seed0" in ids
    ids = list(by_id(grid(**both, method_setups={"lora": (Setup.NONE, Setup.SEQUENTIAL)})))
    lora = [i for i in ids if "/lora/" in i]  # chains, no sizes; no Stack of LoRA: no plain LoRA adapters
    assert lora == ["intermediate/lora/toy-sentiment", "intermediate/lora/toy-sentiment-then-toy-pair",
                    "target/toy-tags/lora/none/seed0",
                    "target/toy-tags/lora/sequential-toy-sentiment-then-toy-pair/seed0"]
    assert by_id(grid(**both))["target/toy-tags/lora/stack-size-toy-pair-n8/seed0"]  # not named: every axis


def test_long_names_keep_their_front_and_stay_distinct():
    from stepstone.experiments.axes import fit

    assert fit("short-name") == "short-name"
    a, b = fit("x" * 60 + "-then-a"), fit("x" * 60 + "-then-b")
    assert len(a) == len(b) == 64 and a != b and a.startswith("x" * 55 + "-")


def tagging_file(path: Path, sentences: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [("Anna", "B-PER"), ("lives", "O"), ("in", "O"), ("Berlin", "B-LOC"), (".", "O")]
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in rows) + "\n" for _ in range(sentences)))
    return path


def test_perturbed_and_out_of_domain_evaluations_are_recorded(tmp_path):
    data = tmp_path / "data"
    for name in ("train-en", "dev-en", "dev-de"):
        tagging_file(data / "target" / "panx" / f"{name}.tsv", 6)
    news = tagging_file(tmp_path / "ood" / "news.tsv", 4)
    spec = grid(intermediate=("toy-sentiment",), setups=(Setup.NONE,), data_dir=data,
                perturb=("typo:0.2", "dropout:0.3"), perturb_seed=1,
                targets=(TargetSpec("panx", split="validation", langs=("en", "de"), data_files=(news,)),
                         TargetSpec("toy-tags")))
    result = run_grid(spec, tmp_path / "g", isolate=False)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == []
    panx = records["target/panx/bottleneck/none/seed0"]
    assert sorted(panx["perturbed"]) == ["dropout:0.3", "typo:0.2"]
    assert all(sorted(by_lang) == ["de", "en"] for by_lang in panx["perturbed"].values())
    assert list(panx["domain"]) == ["news"] and 0.0 <= panx["domain"]["news"] <= 100.0
    report = json.loads((tmp_path / "g" / "evaluations" / "target__panx__bottleneck__none__seed0.json").read_text())
    assert {label: block["seed"] for label, block in report["perturbed"].items()} == {"typo:0.2": 1, "dropout:0.3": 1}
    shifted = json.loads((tmp_path / "g" / "evaluations" / "target__panx__bottleneck__none__seed0.domain0.json")
                         .read_text())
    assert shifted["domain"]["label"] == "news" and shifted["domain"]["scores"]["f1"] == panx["domain"]["news"]
    assert "domain" not in records["target/toy-tags/bottleneck/none/seed0"]


def test_perturb_setups_perturb_only_those_cells(tmp_path):
    spec = grid(intermediate=("toy-sentiment",), perturb=("typo:0.2",), perturb_setups=(Setup.NONE,))
    assert run_grid(spec, tmp_path / "g", isolate=False).failed == []
    records = load_records(tmp_path / "g" / CELLS)
    assert "typo:0.2" in records["target/toy-tags/bottleneck/none/seed0"]["perturbed"]
    assert "perturbed" not in records["target/toy-tags/bottleneck/stack-toy-sentiment/seed0"]
    assert "perturb_setups:\n- none\n" in (tmp_path / "g" / "grid.yaml").read_text()  # pinned once set


def test_perturb_seeds_perturb_only_those_seeds(tmp_path):
    spec = grid(intermediate=("toy-sentiment",), setups=(Setup.NONE,), seeds=(0, 1), perturb=("typo:0.2",),
                perturb_seeds=(1,))
    assert run_grid(spec, tmp_path / "g", isolate=False).failed == []
    records = load_records(tmp_path / "g" / CELLS)
    assert "perturbed" not in records["target/toy-tags/bottleneck/none/seed0"]
    assert "typo:0.2" in records["target/toy-tags/bottleneck/none/seed1"]["perturbed"]



def test_intermediate_train_sets_an_intermediate_tasks_training_but_never_a_targets():
    spec = grid(intermediate_train={"toy-pair": {"max_train_examples": 24, "epochs": 2}, "toy-sentiment": {"epochs": 3}},
                intermediate_sizes={"toy-pair": (8,)}, sequential=(("toy-sentiment", "toy-pair"),),
                targets=(TargetSpec("toy-tags"), TargetSpec("toy-sentiment", intermediates=("toy-pair",))))
    planned = by_id(spec)
    pair = planned["intermediate/bottleneck/toy-pair"].spec.train
    assert (pair.max_train_examples, pair.epochs) == (24, 2)
    sized = planned["intermediate/bottleneck/toy-pair-n8"].spec.train
    assert (sized.max_train_examples, sized.epochs) == (8, 2)  # the size wins over the task's examples
    chained = planned["intermediate/bottleneck/toy-sentiment-then-toy-pair"].spec.train
    assert (chained.max_train_examples, chained.epochs) == (24, 2)  # the chain's toy-pair step
    assert planned["intermediate/bottleneck/toy-sentiment"].spec.train.epochs == 3
    # a target trained on an intermediate task keeps the grid's `train` (the preset's: 32 examples, 1 epoch)
    target = planned["target/toy-sentiment/bottleneck/none/seed0"].spec.train
    assert (target.max_train_examples, target.epochs) == (32, 1)
    assert "intermediate_train" not in grid().to_config()
    assert spec.to_config()["intermediate_train"]["toy-pair"]["epochs"] == 2


def test_a_grid_resumed_without_its_zoo_trains_the_lost_intermediate_adapters_again(tmp_path, notes):
    """A grid continued on another machine from its committed cells.jsonl (weights are never committed): the
    intermediate adapters the remaining cells compose or continue are trained again; the others are not."""
    import shutil

    spec = grid(sequential=(("toy-sentiment", "toy-pair"),))
    folder = tmp_path / "g"
    first = run_grid(spec, folder, isolate=False, limit=5)  # the three intermediate adapters, the chain, none
    assert first.ran == 5
    shutil.rmtree(folder / "zoo")
    rest = run_grid(spec, folder, isolate=False, progress=notes)
    assert rest.failed == []
    lines = [json.loads(line)["id"] for line in (folder / CELLS).read_text().splitlines()]
    again = [i for i in lines[5:] if i.startswith("intermediate/")]
    # stack-toy-sentiment and stack-toy-pair compose theirs; the chain's last step is composed, and continues its
    # first step, which is the grid's own toy-sentiment adapter (trained again once)
    assert sorted(again) == ["intermediate/bottleneck/toy-pair", "intermediate/bottleneck/toy-sentiment",
                             "intermediate/bottleneck/toy-sentiment-then-toy-pair"]
    assert notes.lines[:2] == [f"3 intermediate adapters recorded as trained are not in {folder / 'zoo'}: training "
                               "them again", f"grid {folder}: 5 cells to run, 2 already done"]
    assert run_grid(spec, folder, isolate=False).ran == 0


def test_a_resumed_grid_does_not_train_again_what_only_a_passed_over_stack_composes(tmp_path):
    """The other seeds of the Stack cells that are not the best never run: once the pick is settled, a grid resumed
    without its zoo does not train their intermediate adapters again."""
    import shutil

    spec = grid(seeds=(0, 1))
    folder = tmp_path / "g"
    first = run_grid(spec, folder, isolate=False)
    records = load_records(folder / CELLS)
    picked = [r["intermediate"] for r in records.values() if r["composition"] == "stack" and r["seed"] == 1]
    assert first.failed == [] and len(picked) == 1  # the passed-over stack's seed-1 cell is never recorded
    shutil.rmtree(folder / "zoo")
    again = run_grid(spec, folder, isolate=False)
    assert (again.ran, again.failed) == (0, [])



@pytest.mark.parametrize("workers", [1, 2], ids=["serial", "side-by-side"])
def test_a_grid_moved_before_its_pick_settles_trains_again_only_the_picked_candidate(tmp_path, notes, workers):
    """Resumed without its zoo while a first-seed Stack cell is still to run: the lost adapters only the other
    seeds' Stack cells compose wait for the pick, and only the picked one is trained again."""
    import shutil

    from stepstone.experiments.execution import ExecutorSpec

    spec = grid(intermediate=("toy-sentiment", "toy-pair", "toy-choice"), seeds=(0, 1))
    folder = tmp_path / "g"
    run_grid(spec, folder, isolate=False, limit=6)  # the 3 adapters, none and 2 of the 3 first-seed stacks
    assert "target/toy-tags/bottleneck/stack-toy-choice/seed0" not in load_records(folder / CELLS)
    shutil.rmtree(folder / "zoo")
    rest = run_grid(spec, folder, progress=notes, executor=ExecutorSpec(workers=workers))
    lines = [json.loads(line) for line in (folder / CELLS).read_text().splitlines()]
    assert rest.failed == [] and all(r["status"] == "ok" for r in lines)
    picked = [r["intermediate"] for r in lines if r["composition"] == "stack" and r["seed"] == 1]
    assert len(picked) == 1
    again = {r["task"] for r in lines[6:] if r["id"].startswith("intermediate/")}
    assert again == {"toy-choice", *picked}  # toy-choice for its first-seed stack; of the others, the pick only
    assert notes.lines[0] == (f"3 intermediate adapters recorded as trained are not in {folder / 'zoo'}: training "
                              "them again (2 of them once a best stack picks them)")
    assert run_grid(spec, folder, isolate=False).ran == 0
