"""A run that cannot learn is flagged where it happens: the manifest's `learning` record, the warning line of
`stepstone train`, the grid's cell record and its console line (tiny backbone, toy tasks)."""
from __future__ import annotations

import json
import math

import pytest

from typer.testing import CliRunner

from stepstone import health, pipelines
from stepstone.experiments import CELLS, GridSpec, Preset, Setup, TargetSpec, load_records, run_grid
from stepstone.specs import RunSpec, TrainSpec
from stepstone.tasks import TaskFormat
from stepstone.zoo import Zoo
from stepstone_cli.main import app

# 96 examples, batches of 8, 2 epochs: 24 steps, loss windows of 6 steps
DEAD = TrainSpec(lr=1e-9, epochs=2, batch_size=8, max_train_examples=96, max_eval_examples=32)
LEARNS = TrainSpec(lr=5e-3, epochs=4, batch_size=8, max_train_examples=96, max_eval_examples=32)


def step_losses(path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (path / "train_log.jsonl").read_text().splitlines())
            if r["kind"] == "step"]


def test_a_run_that_cannot_learn_is_flagged_in_its_manifest(tmp_path):
    outcome = pipelines.train_run(RunSpec(task="toy-sentiment", name="dead", train=DEAD), zoo=Zoo(tmp_path))
    learning = outcome.manifest["learning"]
    losses = step_losses(outcome.path)
    start, end = sum(losses[:6]) / 6, sum(losses[-6:]) / 6  # the rule's windows: min(10, 24 // 4) steps
    assert json.loads((outcome.path / "manifest.json").read_text())["learning"] == learning
    assert set(learning) == {"verdict", "reason", "metric", "dev", "chance", "majority", "level", "margin",
                             "prior_loss", "loss_start", "loss_end", "steps"}
    assert (learning["verdict"], learning["steps"], learning["metric"]) == ("not-learned", 24, "accuracy")
    assert (learning["loss_start"], learning["loss_end"]) == (start, end)
    assert learning["dev"] == outcome.manifest["metrics"]["dev"]["accuracy"]
    assert learning["chance"] == 50.0 and learning["level"] == max(50.0, learning["majority"])
    level = learning["level"] / 100  # two standard errors of a constant predictor on the 32 dev examples
    assert learning["margin"] == pytest.approx(2 * 100 * math.sqrt(level * (1 - level) / 32))
    assert learning["dev"] <= learning["level"] + learning["margin"] and end > (1 - health.FLAT_LOSS) * start
    assert learning["reason"] == (
        f"English dev accuracy {learning['dev']:.1f} is within {learning['margin']:.1f} points of the baseline "
        f"(chance 50.0 / majority class {learning['majority']:.1f}); the training loss never left its starting "
        f"value ({start:.3f} -> {end:.3f} over 24 steps)")


def test_stepstone_train_prints_one_warning_line_for_a_run_that_did_not_learn(tmp_path):
    runner = CliRunner(env={"COLUMNS": "200"})
    common = ["--zoo", str(tmp_path / "zoo"), "-q", "train.batch_size=8", "train.max_train_examples=96",
              "train.max_eval_examples=32"]
    dead = runner.invoke(app, ["train", "--task", "toy-sentiment", "--name", "dead", *common, "train.lr=1e-9",
                               "train.epochs=2"])
    assert dead.exit_code == 0, dead.output
    learning = json.loads((tmp_path / "zoo" / "dead" / "manifest.json").read_text())["learning"]
    assert learning["verdict"] == "not-learned"
    assert dead.stderr.splitlines() == [f"warning: 'dead' did not learn: {learning['reason']} (check train.lr; "
                                        "README: Did it learn?)"]
    assert "saved adapter: " in dead.stdout.splitlines()[-1]  # the warning comes after what the command did
    fine = runner.invoke(app, ["train", "--task", "toy-tags", "--name", "fine", *common, "train.lr=5e-3",
                               "train.epochs=4"])
    assert fine.exit_code == 0, fine.output
    learning = json.loads((tmp_path / "zoo" / "fine" / "manifest.json").read_text())["learning"]
    assert (learning["verdict"], learning["reason"], fine.stderr) == ("learned", None, "")
    assert learning["loss_end"] < (1 - health.FLAT_LOSS) * learning["loss_start"]


def test_the_grid_records_and_prints_the_verdict_of_each_cell(tmp_path):
    """Per-family settings: classification trains at a learning rate too small to learn, tagging at one that
    learns; the cells say so."""
    sizes = {"epochs": 4, "batch_size": 8, "max_train_examples": 96, "max_eval_examples": 32}
    grid = GridSpec(intermediate=("toy-pair",), preset=Preset.TINY, seeds=(0,), methods=("bottleneck",),
                    setups=(Setup.NONE,), full_finetune=False,
                    targets=(TargetSpec("toy-sentiment"), TargetSpec("toy-tags")), train=sizes,
                    train_by_format={TaskFormat.CLASSIFICATION: {"lr": 1e-9}, TaskFormat.TAGGING: {"lr": 5e-3}})
    lines: list[str] = []
    result = run_grid(grid, tmp_path / "g", isolate=False, echo=lines.append)
    assert result.failed == []
    records = load_records(tmp_path / "g" / CELLS)
    dead, fine = records["target/toy-sentiment/bottleneck/none/seed0"], records["target/toy-tags/bottleneck/none/seed0"]
    manifest = json.loads((tmp_path / "g" / "zoo" / dead["artifact"] / "manifest.json").read_text())
    assert manifest["spec"]["train"]["lr"] == 1e-9 and dead["learning"] == manifest["learning"]
    assert dead["learning"]["verdict"] == "not-learned" and fine["learning"]["verdict"] == "learned"
    assert lines == [f"  warning: 'target/toy-sentiment/bottleneck/none/seed0' did not learn: "
                     f"{dead['learning']['reason']} (check train.lr; README: Did it learn?)"]  # cell k/n: progress
    # the report marks the cell, in report.md and in the terminal table
    shown = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["report", str(tmp_path / "g"), "--no-plots"])
    assert shown.exit_code == 0, shown.output
    table = [line for line in shown.stdout.splitlines() if "toy-sentiment" in line or "toy-tags" in line]
    assert len(table) == 2 and "⚠" in table[0] and "⚠" not in table[1]
    caption = "⚠: a run of this entry did not learn (report.md: Runs that did not learn)"
    assert caption in " ".join(shown.stdout.split())  # wrapped to the table's width
    md = (tmp_path / "g" / "report.md").read_text()
    assert f"| target/toy-sentiment/bottleneck/none/seed0 | {dead['learning']['dev']:.1f} |" in md


def test_a_multitask_run_is_judged_per_task(tmp_path):
    spec = RunSpec(task=("toy-sentiment", "toy-tags"), name="both", train=DEAD)
    outcome = pipelines.train_run(spec, zoo=Zoo(tmp_path))
    learning = outcome.manifest["learning"]
    by_task = learning["by_task"]
    assert set(by_task) == {"toy-sentiment", "toy-tags"} and learning["verdict"] == "not-learned"
    dev = outcome.manifest["metrics"]["dev_by_task"]
    assert by_task["toy-sentiment"]["dev"] == dev["toy-sentiment"]["accuracy"]
    assert by_task["toy-tags"]["dev"] == dev["toy-tags"]["f1"] and by_task["toy-tags"]["metric"] == "f1"
    # each task's loss curve is its own steps: proportional sampling, 12 + 12 batches of 8 per epoch
    log = [json.loads(line) for line in (outcome.path / "train_log.jsonl").read_text().splitlines()]
    for name, record in by_task.items():
        mine = [r["loss"] for r in log if r["kind"] == "step" and r["tasks"] == [name]]
        assert record["steps"] == len(mine) == 24 and record["loss_start"] == sum(mine[:6]) / 6
    flagged = [n for n in ("toy-sentiment", "toy-tags") if by_task[n]["verdict"] == "not-learned"]
    assert flagged and learning["reason"] == "; ".join(f"{n}: {by_task[n]['reason']}" for n in flagged)
    # the top level carries the first task's numbers and the run's verdict
    assert {k: v for k, v in learning.items() if k not in ("verdict", "reason", "by_task")} == \
        {k: v for k, v in by_task["toy-sentiment"].items() if k not in ("verdict", "reason")}
