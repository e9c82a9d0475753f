"""A grid's rank cells (issue 15): where they sit, what they pass `stepstone.ranking.rank` (a stand-in here: the lead's
estimators are tested on their own), what they record, and `stack_pick`: the estimator's pick gets every seed, with a
fallback to the dev rule and its warning; resume; grids without rank expand and pin as before."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import stepstone.ranking
from stepstone.config import build, dump_yaml, load_yaml
from stepstone.errors import ConfigError
from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, cells, load_grid, load_records, run_grid
from stepstone.experiments import run as runner
from stepstone.experiments.cells import Kind
from stepstone.experiments.report import build_report
from stepstone.experiments.run import planned
from stepstone.progress import silent
from stepstone.ranking import NONE, Estimator, Ranking, Row, Score

ROOT = Path(__file__).resolve().parents[2]
INTER = ("toy-sentiment", "toy-pair")


class FakeRank:
    """`stepstone.ranking.rank`'s stand-in: records its calls; scores each candidate by `order` (first = best) per
    estimator; an estimator in `unscored` scores no intermediate; `fail` raises."""

    def __init__(self, order: dict[str, tuple[str, ...]], unscored: tuple[str, ...] = (), fail: bool = False):
        self.order, self.unscored, self.fail, self.calls = order, unscored, fail, []

    def __call__(self, target: str, **options) -> Ranking:
        self.calls.append((target, options))
        if self.fail:
            raise RuntimeError("the estimator broke")
        method, names = options["method"], [c.removeprefix(f"{options['method']}-") for c in options["candidates"]]

        def score(estimator: Estimator, name: str | None) -> Score:
            if name is None:
                return Score(-100.0)  # the bare backbone ranks last
            if estimator.value in self.unscored:
                return Score(None, note="does not apply")
            order = self.order[estimator.value]
            return Score(float(len(order) - order.index(name)))

        rows = [Row(NONE, None, None, {e.value: score(e, None) for e in options["estimators"]})]
        rows += [Row(f"{method}-{n}", n, method, {e.value: score(e, n) for e in options["estimators"]}) for n in names]
        return Ranking(target, options["backbone"], options["examples"], tuple(options["estimators"]), tuple(rows))


@pytest.fixture
def fake(monkeypatch):
    def install(**kw) -> FakeRank:
        stand_in = FakeRank(**kw)
        monkeypatch.setattr(stepstone.ranking, "rank", stand_in)
        return stand_in
    return install


DEV = {"toy-sentiment": 80.0, "toy-pair": 60.0}  # the dev rule picks toy-sentiment


@pytest.fixture
def scripted(monkeypatch):
    """Training and evaluation replaced by fixed results (English dev by DEV): the rank cells run for real."""
    real = runner._run_cell

    def run_cell(grid, folder, cell, progress):
        if cell.kind is Kind.RANK:
            return real(grid, folder, cell, progress)
        if cell.kind is Kind.INTERMEDIATE:
            return {"status": "ok", "error": None}
        zero_shot = {"toy-sentiment": 40.0, "toy-pair": 45.0}.get(cell.record.intermediate, 30.0)
        return {"status": "ok", "error": None, "metric": "f1", "dev": DEV.get(cell.record.intermediate, 50.0),
                "scores": {"en": 70.0, "xa": zero_shot}}

    monkeypatch.setattr(runner, "_run_cell", run_cell)


def grid_of(**changes) -> GridSpec:
    spec = dict(intermediate=INTER, preset=Preset.TINY, seeds=(0, 1, 2), methods=("bottleneck",),
                setups=(Setup.NONE, Setup.STACK), full_finetune=False, targets=(TargetSpec("toy-tags"),),
                rank=(Estimator.LOGME, Estimator.SEMB))
    spec.update(changes)
    return GridSpec(**spec)


def ids_of(grid: GridSpec) -> list[str]:
    return [c.id for c in cells(grid)]


# ---- cells
def test_rank_cells_sit_before_their_targets_cells(tmp_path):
    grid = grid_of(methods=("bottleneck", "lora"), seeds=(0, 1), setups=(Setup.NONE, Setup.STACK, Setup.FUSE),
                   method_setups={"lora": (Setup.NONE,)},  # no stack for LoRA: nothing to rank
                   targets=(TargetSpec("toy-tags"), TargetSpec("tatoeba", langs=("de",)),
                            TargetSpec("toy-pair", intermediates=("toy-sentiment",), seeds=(3,)),
                            TargetSpec("toy-qa", setups=(Setup.NONE,))))
    ids = ids_of(grid)
    assert [i for i in ids if i.startswith("rank/")] == ["rank/toy-tags/bottleneck", "rank/toy-pair/bottleneck"]
    assert ids.index("rank/toy-tags/bottleneck") == 2  # after the intermediate cells, first of its target's
    assert ids[3] == "target/toy-tags/bottleneck/none/seed0"
    assert ids[ids.index("rank/toy-pair/bottleneck") + 1] == "target/toy-pair/bottleneck/none/seed3"
    by_id = {c.id: c for c in cells(grid)}
    tags, pair = by_id["rank/toy-tags/bottleneck"], by_id["rank/toy-pair/bottleneck"]
    assert tags.kind is Kind.RANK and tags.spec is None and tags.after is None
    assert tags.record.as_dict() == {"id": "rank/toy-tags/bottleneck", "kind": "rank", "target": "toy-tags",
                                     "train_task": "toy-tags", "method": "bottleneck", "seed": 0,
                                     "train_language": "en", "stack_pick": "dev", "backbone": "tiny"}
    assert tags.rank.candidates == ("bottleneck-toy-sentiment", "bottleneck-toy-pair")
    assert pair.rank.candidates == ("bottleneck-toy-sentiment",) and pair.record.seed == 3
    # the tiny preset trains on 32 examples: the estimators read no more; proxy's default steps
    assert (tags.rank.examples, tags.rank.steps) == (32, 50)
    assert tags.rank.train == by_id["target/toy-tags/bottleneck/stack-toy-pair/seed0"].spec.train
    assert pair.rank.train == by_id["target/toy-pair/bottleneck/stack-toy-sentiment/seed3"].spec.train
    assert pair.rank.train.seed == 3
    sized = {c.id: c.rank for c in cells(grid_of(rank_examples=20, rank_steps=7, rank=(Estimator.PROXY,)))
             if c.rank is not None}
    assert [(r.examples, r.steps) for r in sized.values()] == [(20, 7)]
    capped = [c.rank.examples for c in cells(grid_of(rank_examples=100)) if c.rank is not None]
    assert capped == [32]
    no_cap = [c.rank.examples for c in cells(grid_of(train={"max_train_examples": None})) if c.rank is not None]
    assert no_cap == [500]  # ranking's default


def test_a_target_with_rank_false_gets_no_rank_cell_and_pins_the_key_only_where_set():
    grid = grid_of(targets=(TargetSpec("toy-tags"), TargetSpec("toy-pair", intermediates=("toy-sentiment",),
                                                                rank=False)))
    assert [i for i in ids_of(grid) if i.startswith("rank/")] == ["rank/toy-tags/bottleneck"]
    assert "target/toy-pair/bottleneck/stack-toy-sentiment/seed0" in ids_of(grid)  # its stack cells still run
    assert "rank" not in TargetSpec("toy-tags").to_config()
    assert TargetSpec("toy-tags", rank=False).to_config()["rank"] is False


def test_grids_without_rank_expand_and_pin_as_before():
    for grid in (grid_of(rank=()), grid_of(rank=(), methods=("bottleneck", "lora"), setups=(Setup.NONE, Setup.STACK,
                                                                                             Setup.FUSE))):
        ranked = dataclasses.replace(grid, rank=(Estimator.LOGME,), stack_pick="logme")
        plain = [(c.id, c.record, c.spec, c.target, c.evaluate_artifact, c.after, c.rank) for c in cells(grid)]
        assert [c for c in cells(grid) if c.kind is Kind.RANK] == []
        assert [(c.id, c.record, c.spec, c.target, c.evaluate_artifact, c.after, c.rank) for c in cells(ranked)
                if c.kind is not Kind.RANK] == plain
        text = dump_yaml(grid)
        assert not any(line.split(":")[0] in ("rank", "rank_examples", "rank_steps", "stack_pick")
                       for line in text.splitlines())
        assert "rank:\n- logme\n" in dump_yaml(ranked) and "stack_pick: logme\n" in dump_yaml(ranked)
        assert build(GridSpec, load_yaml_text(dump_yaml(ranked))) == ranked
    # the committed cpu-small grid pins the text it pinned; it lacks only keys added before issue 15 (at defaults)
    path = ROOT / "docs" / "results" / "cpu-small" / "grid.yaml"
    data, _ = load_yaml(path)
    dumped = dump_yaml(build(GridSpec, data)).splitlines(keepends=True)
    older = ("  attention: sdpa\n", "full_train_by_format: {}\n", "multitask_train: {}\n", "train_by_format: {}\n")
    assert "".join(line for line in dumped if line not in older) == path.read_text(encoding="utf-8")


def load_yaml_text(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


# ---- running
def test_rank_cells_run_rank_with_the_grids_settings_and_record_it(fake, tmp_path):
    """A real tiny grid (the Stack cells train): the rank cell calls `ranking.rank` with exactly these arguments and
    records its Ranking; with stack_pick: logme the other seeds go to logme's pick."""
    grid = grid_of(seeds=(0, 1), setups=(Setup.STACK,), stack_pick="logme")
    ranker = fake(order={"logme": ("toy-pair", "toy-sentiment"), "semb": ("toy-sentiment", "toy-pair")})
    folder = tmp_path / "g"
    assert planned(grid, {}) == (6, 0)  # 2 intermediate, rank, 2 stacks at seed 0; one stack at seed 1
    first = run_grid(grid, folder, isolate=False, limit=3)  # stops after the rank cell
    assert first.ran == 3 and len(ranker.calls) == 1
    target, options = ranker.calls[0]
    zoo = options.pop("zoo")
    stack = {c.id: c for c in cells(grid)}["target/toy-tags/bottleneck/stack-toy-sentiment/seed0"].spec
    assert (target, zoo.root) == ("toy-tags", folder / "zoo")
    assert options == {"candidates": ["bottleneck-toy-sentiment", "bottleneck-toy-pair"],
                       "estimators": (Estimator.LOGME, Estimator.SEMB), "examples": 32, "data_dir": None,
                       "backbone": "tiny", "method": "bottleneck", "train_split": "train", "steps": 50,
                       "train": stack.train, "progress": silent}
    records = load_records(folder / CELLS)
    rank = records["rank/toy-tags/bottleneck"]
    assert rank.status == "ok" and rank.stack_pick == "logme" and rank.error is None
    assert Ranking.from_dict(rank.ranking) == FakeRank(ranker.order)("toy-tags", **options, zoo=zoo)
    assert rank.ranking["ranks"] == {"logme": ["bottleneck-toy-pair", "bottleneck-toy-sentiment", "none"],
                                     "semb": ["bottleneck-toy-sentiment", "bottleneck-toy-pair", "none"]}
    assert planned(grid, records) == (3, 3)
    rest = run_grid(grid, folder, isolate=False)  # resumes: the rank cell is not run again
    assert (rest.ran, rest.skipped, rest.failed) == (3, 3, []) and len(ranker.calls) == 1
    records = load_records(folder / CELLS)
    assert [r.intermediate for r in records.values() if r.seed == 1] == ["toy-pair"]
    assert (folder / CELLS).read_text().count('"kind": "rank"') == 1


@pytest.mark.parametrize("pick, seeded", [("dev", "toy-sentiment"), ("logme", "toy-pair"), ("semb", "toy-sentiment")])
def test_stack_pick_gives_every_seed_to_its_pick(fake, scripted, tmp_path, pick, seeded):
    grid = grid_of(stack_pick=pick)
    fake(order={"logme": ("toy-pair", "toy-sentiment"), "semb": ("toy-sentiment", "toy-pair")})
    echoed: list[str] = []
    result = run_grid(grid, tmp_path / "g", isolate=False, echo=echoed.append)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == [] and echoed == []
    stacks = sorted((r.seed, r.intermediate) for r in records.values() if r.composition == "stack")
    assert stacks == [(0, "toy-pair"), (0, "toy-sentiment"), (1, seeded), (2, seeded)]
    assert records["rank/toy-tags/bottleneck"].stack_pick == pick
    # the report's best stack is the one that got every seed
    headline = build_report(tmp_path / "g", plots=False).tables["headline"]
    best = [row for row in headline if row["composition"] == "stack"]
    assert [(row["intermediate"], row["n"]) for row in best] == [(seeded, 3)]


@pytest.mark.parametrize("how, warning", [
    ({"fail": True}, "rank/toy-tags/bottleneck failed"),
    ({"unscored": ("logme",)}, "logme ranked no intermediate first in rank/toy-tags/bottleneck")],
    ids=["rank-failed", "nothing-scored"])
def test_stack_pick_falls_back_to_dev_with_one_warning(fake, scripted, tmp_path, how, warning):
    grid = grid_of(stack_pick="logme")
    fake(order={"logme": ("toy-pair", "toy-sentiment"), "semb": ("toy-sentiment", "toy-pair")}, **how)
    echoed: list[str] = []
    result = run_grid(grid, tmp_path / "g", isolate=False, echo=echoed.append)
    records = load_records(tmp_path / "g" / CELLS)
    warned = [line for line in echoed if "warning" in line]
    assert warned == [f"  warning: {warning}: the best stack of toy-tags [bottleneck] goes by English dev instead"]
    stacks = sorted((r.seed, r.intermediate) for r in records.values() if r.composition == "stack")
    assert stacks == [(0, "toy-pair"), (0, "toy-sentiment"), (1, "toy-sentiment"), (2, "toy-sentiment")]
    if how.get("fail"):
        assert result.failed == ["rank/toy-tags/bottleneck"]
        assert records["rank/toy-tags/bottleneck"].error == "RuntimeError: the estimator broke"
    headline = build_report(tmp_path / "g", plots=False).tables["headline"]
    assert [row["intermediate"] for row in headline if row["composition"] == "stack"] == ["toy-sentiment"]


def test_planned_counts_rank_picks_where_there_is_no_dev(fake, scripted, tmp_path):
    """A target without English dev data: the dev rule picks nothing (no best-stack seeds); a rank pick does."""
    no_dev = (TargetSpec("toy-tags", dev=False),)
    assert planned(grid_of(targets=no_dev), {}) == (1 + 2 + 3 + 2, 0)  # rank, intermediates, none x3, stacks at 0
    grid = grid_of(targets=no_dev, stack_pick="logme")
    assert planned(grid, {}) == (1 + 2 + 3 + 2 + 2, 0)  # + the pick at seeds 1 and 2
    fake(order={"logme": ("toy-pair", "toy-sentiment"), "semb": ("toy-sentiment", "toy-pair")}, unscored=("logme",))
    run_grid(grid, tmp_path / "g", isolate=False, limit=3)
    assert planned(grid, load_records(tmp_path / "g" / CELLS)) == (5, 3)  # logme picked nothing: no seeds to pick


# ---- bad settings
HEAD = "preset: tiny\ntargets: [{task: toy-tags}]\nseeds: [0]\nintermediate: [toy-sentiment]\n"


@pytest.mark.parametrize("text, message", [
    ("rank: [logmee]\n", "g.yaml:5: 'rank[0]' must be one of: logme, proxy, semb (got 'logmee')"),
    ("rank: [logme]\nstack_pick: semb\n", "g.yaml:6: stack_pick 'semb' is not dev or an estimator rank runs (valid: "
                                          "dev, logme)"),
    ("rank: [logme]\nstack_pick: logmi\n", "g.yaml:6: stack_pick 'logmi' is not dev or an estimator rank runs (valid: "
                                           "dev, logme), did you mean 'logme'?"),
    ("stack_pick: logme\n", "g.yaml:5: stack_pick 'logme' is not dev or an estimator rank runs (valid: dev)"),
    ("rank: [logme]\nsetups: [none]\n", "g.yaml:5: rank scores the intermediate adapters of a trained target's stack "
                                        "cells, but no target runs a stack setup"),
    ("rank: [logme]\nrank_examples: 0\n", "g.yaml:6: rank_examples must be at least 1 (got 0)"),
    ("rank: [proxy]\nrank_steps: -2\n", "g.yaml:6: rank_steps must be at least 1 (got -2)"),
    ("rank_examples: 100\n", "g.yaml:5: rank_examples is set, but rank lists no estimators"),
    ("rank: [logme, semb]\nrank_steps: 10\n", "g.yaml:6: rank_steps are proxy's training steps, but rank does not run "
                                              "proxy (rank: logme, semb)"),
    ("rank: [logme]\nstack_pick: logme\nstack_all_seeds: true\n",
     "g.yaml:6: stack_pick picks the stack that gets every seed, but stack_all_seeds is true (every stack gets every "
     "seed)"),
], ids=["unknown-estimator", "pick-not-ranked", "pick-typo", "pick-without-rank", "rank-without-stack",
        "examples-below-1", "steps-below-1", "examples-without-rank", "steps-without-proxy", "pick-all-seeds"])
def test_bad_rank_settings_are_refused_with_file_and_line(tmp_path, text, message):
    path = tmp_path / "g.yaml"
    path.write_text(HEAD + text)
    with pytest.raises(ConfigError) as caught:
        load_grid(path)
    assert str(caught.value) == str(path.parent / message)


@pytest.mark.parametrize("text, message", [
    ("targets: [{task: toy-tags, rank: false}]\n", "g.yaml:4: target 'toy-tags' sets rank: false, but the grid "
                                                   "ranks nothing (rank lists no estimator)"),
    ("targets: [{task: toy-tags, rank: false}]\nrank: [logme]\nstack_pick: logme\n",
     "g.yaml:4: target 'toy-tags' sets rank: false, but stack_pick 'logme' picks its best stack from its rank cell "
     "(valid with rank: false: stack_pick: dev)"),
    ("targets: [{task: tatoeba, rank: false}, {task: toy-tags}]\nrank: [logme]\n",
     "g.yaml:4: target 'tatoeba' is a retrieval task (evaluated with the intermediate adapters, never trained): rank "
     "does not apply to it"),
], ids=["without-rank", "picked-by-rank", "retrieval"])
def test_a_target_rank_false_that_skips_nothing_or_leaves_a_pick_without_its_cell_is_refused(tmp_path, text,
                                                                                            message):
    path = tmp_path / "g.yaml"
    path.write_text("preset: tiny\nseeds: [0]\nintermediate: [toy-sentiment]\n" + text)
    with pytest.raises(ConfigError) as caught:
        load_grid(path)
    assert str(caught.value) == str(path.parent / message)


def test_rank_of_a_retrieval_only_grid_is_refused(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("preset: tiny\ntargets: [{task: tatoeba}]\nseeds: [0]\nintermediate: [toy-sentiment]\n"
                    "rank: [semb]\n")
    with pytest.raises(ConfigError, match=r"g.yaml:5: rank scores the intermediate adapters of a trained target's "):
        load_grid(path)
    good = tmp_path / "ok.yaml"
    good.write_text(HEAD + "rank: [logme, proxy]\nrank_examples: 10\nrank_steps: 5\nstack_pick: proxy\n")
    grid = load_grid(good)
    assert (grid.rank, grid.rank_examples, grid.rank_steps, grid.stack_pick) == (
        (Estimator.LOGME, Estimator.PROXY), 10, 5, "proxy")


def test_an_isolated_rank_cell_sends_its_ranking_back(fake, scripted, tmp_path):
    fake(order={"logme": ("toy-pair", "toy-sentiment"), "semb": ("toy-sentiment", "toy-pair")})
    result = run_grid(grid_of(), tmp_path / "g", isolate=True, limit=3)  # the rank cell runs in a forked child
    rank = load_records(tmp_path / "g" / CELLS)["rank/toy-tags/bottleneck"]
    assert result.failed == [] and rank.status == "ok"
    assert rank.ranking["ranks"]["logme"] == ["bottleneck-toy-pair", "bottleneck-toy-sentiment", "none"]


def test_a_tiny_grid_runs_the_real_rank_and_reports_it(tmp_path):
    """End to end, nothing stood in: the rank cell ranks the grid's own intermediate adapters with LogME and
    similarity, the Stack cells measure their gains, and the report compares the two."""
    grid = grid_of(seeds=(0,))
    result = run_grid(grid, tmp_path / "g", isolate=False)
    assert result.failed == []
    rank = load_records(tmp_path / "g" / CELLS)["rank/toy-tags/bottleneck"]
    ranking = Ranking.from_dict(rank.ranking)
    assert [(r.candidate, r.intermediate) for r in ranking.rows] == [
        (NONE, None), ("bottleneck-toy-sentiment", "toy-sentiment"), ("bottleneck-toy-pair", "toy-pair")]
    assert all(r.value("logme") is not None for r in ranking.rows)
    assert [r.value("semb") is None for r in ranking.rows] == [True, False, False]
    report = build_report(tmp_path / "g", plots=True)
    agreement = report.tables["rank_agreement"]
    assert [(r["target"], r["estimator"], r["n"]) for r in agreement] == [("toy-tags", "logme", 3),
                                                                          ("toy-tags", "semb", 2)]
    assert "## Choosing intermediate tasks: rank vs measured gain" in report.markdown
    assert (tmp_path / "g" / "rank_toy-tags_bottleneck.png").is_file()
