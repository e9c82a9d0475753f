"""What the CLI prints: plain progress lines when stderr is not a terminal (none with -q), user text
verbatim (square brackets are rich markup otherwise: `[de]`, `none [bottleneck]`, a path `cfg[x].yaml`),
and the tracker errors of `--log`."""
from __future__ import annotations

import json
import re

from accelerate import tracking as accelerate_tracking
from typer.testing import CliRunner

from stepstone_cli.main import app

FAST = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16"]
DONE = re.compile(r"(?P<what>[^\x1b]+): (\d+/\d+ \(100%\) )?done in \d:\d\d:\d\d(, [^\x1b]*)?")


def run(*args, columns: int = 200):
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(app, [str(a) for a in args])


def phases(stderr: str) -> list[str]:
    """The phase of every progress line; each must be a plain 'done' line (the phases here are short)."""
    out = []
    for line in stderr.splitlines():
        match = DONE.fullmatch(line)
        assert match, line
        out.append(match["what"])
    return out


def test_progress_lines_when_stderr_is_not_a_terminal_and_none_with_q(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = run("train", "--task", "toy-tags", "--zoo", "zoo", "--name", "tags", *FAST)
    assert trained.exit_code == 0, trained.output
    assert phases(trained.stderr) == ["load backbone tiny", "tokenize toy-tags dev", "tokenize toy-tags train",
                                      "dev toy-tags [en]", "train toy-tags", "save zoo/tags"]
    assert "train toy-tags: 2/2 (100%) done in" in trained.stderr and "epoch 1 loss " in trained.stderr
    assert "saved adapter: zoo/tags" in trained.stdout

    evaluated = run("evaluate", "tags", "--zoo", "zoo", "--langs", "en,xa", "--max-examples", "8")
    assert evaluated.exit_code == 0, evaluated.output
    assert phases(evaluated.stderr) == ["load zoo/tags", "tokenize toy-tags [en]", "evaluate toy-tags [en]",
                                        "tokenize toy-tags [xa]", "evaluate toy-tags [xa]"]
    assert "evaluate toy-tags [en]: 8/8 (100%) done in" in evaluated.stderr

    retrieval = run("evaluate", "tags", "--zoo", "zoo", "--task", "tatoeba", "--langs", "de", "--data-dir", "data")
    assert retrieval.exit_code == 2  # no tatoeba data here: the error is the only line
    assert retrieval.stderr.startswith("error: ") and len(retrieval.stderr.splitlines()) == 1

    quiet = run("train", "--task", "toy-tags", "--zoo", "zoo", "--name", "tags-q", "-q", *FAST)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert run("evaluate", "tags", "--zoo", "zoo", "--langs", "en", "--max-examples", "8", "-q").stderr == ""


def test_retrieval_phases_embedding_and_mining(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sentences = ["the cat sleeps", "a dog runs fast", "birds sing in spring", "we eat bread"]
    (tmp_path / "data/target/tatoeba").mkdir(parents=True)
    for side in ("deu", "eng"):
        (tmp_path / f"data/target/tatoeba/tatoeba.deu-eng.{side}").write_text("\n".join(sentences) + "\n")
    (tmp_path / "data/target/bucc2018").mkdir(parents=True)
    for side in ("de", "en"):
        (tmp_path / f"data/target/bucc2018/de-en.dev.{side}").write_text(
            "".join(f"{side}-{i}\t{s}\n" for i, s in enumerate(sentences)))
    (tmp_path / "data/target/bucc2018/de-en.dev.gold").write_text("".join(f"de-{i}\ten-{i}\n" for i in range(4)))
    tatoeba = run("evaluate", "--backbone", "tiny", "--task", "tatoeba", "--langs", "de", "--data-dir", "data")
    assert tatoeba.exit_code == 0, tatoeba.output
    assert phases(tatoeba.stderr) == ["load tiny", "embed tatoeba [de] source", "embed tatoeba [de] english"]
    bucc = run("evaluate", "--backbone", "tiny", "--task", "bucc", "--langs", "de", "--split", "validation",
               "--data-dir", "data")
    assert bucc.exit_code == 0, bucc.output
    assert phases(bucc.stderr) == ["load tiny", "embed bucc [de] source", "embed bucc [de] target", "mine bucc [de]"]


def test_grid_progress_on_stderr_and_none_with_q(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/target/tatoeba").mkdir(parents=True)
    for side in ("deu", "eng"):
        (tmp_path / f"data/target/tatoeba/tatoeba.deu-eng.{side}").write_text("a cat\nthe dog\n")
    (tmp_path / "g.yaml").write_text("preset: tiny\ndata_dir: data\nintermediate: [toy-sentiment]\nseeds: [0]\n"
                                     "methods: [bottleneck]\nsetups: [none]\nfull_finetune: false\n"
                                     "targets:\n  - {task: tatoeba, langs: [de]}\n")
    ran = run("grid", "g.yaml", "--no-isolate")
    assert ran.exit_code == 0, ran.output
    lines = ran.stderr.splitlines()
    assert lines[:2] == ["grid grids/g: 1 cells to run, 0 already done",
                         "cell 1/1 retrieval/tatoeba/backbone: 0:00:00 elapsed"]
    assert phases("\n".join(lines[2:-1])) == ["load tiny", "embed tatoeba [de] source", "embed tatoeba [de] english"]
    assert re.fullmatch(r"grid: 1 cells ran in 0:00:\d\d", lines[-1])
    assert ran.stdout == "1 cells ran, 0 already done, 0 failed: grids/g\n"
    again = run("grid", "g.yaml", "--no-isolate", "-q")
    assert again.stderr == "" and again.stdout == "0 cells ran, 1 already done, 0 failed: grids/g\n"


def test_report_table_shows_the_real_column_names(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
    try:
        from test_report import grid_cells
    finally:
        sys.path.pop(0)
    from stepstone.experiments import build_report, terminal_rows

    (tmp_path / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in grid_cells()))
    expected = terminal_rows(build_report(tmp_path, plots=False))
    result = run("report", tmp_path, "--no-plots", columns=400)
    assert result.exit_code == 0, result.output
    rows = [[cell.strip() for cell in re.split(r"[┃│]", line)[1:-1]] for line in result.stdout.splitlines()
            if line.startswith(("┃", "│"))]
    assert rows == expected
    assert expected[0][1:3] == ["none [bottleneck]", "none [lora]"]


def test_user_text_with_brackets_prints_verbatim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("train", "--task", "toy-sentiment", "--zoo", "z[x]", "--name", "sent", "-q", *FAST).exit_code == 0
    listed = run("zoo", "list", "--zoo", "z[x]")
    assert "zoo: z[x]" in listed.stdout and "toy-sentiment" in listed.stdout
    removed = run("zoo", "rm", "sent", "--zoo", "z[x]", "--yes")
    assert removed.stdout == "removed z[x]/sent\n"
    listed = run("zoo", "list", "--zoo", "z[x]")
    assert listed.stdout == "zoo z[x] is empty\n"


def test_a_tracker_that_is_not_installed_is_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(accelerate_tracking, "_available_trackers", [])
    result = run("train", "--task", "toy-tags", "--log", "wandb,mlflow", "--log", "tensorboard", *FAST)
    assert result.exit_code == 2
    assert result.stderr == ("error: --log wandb needs the wandb package (pip install wandb); --log mlflow needs "
                             "the mlflow package (pip install mlflow); --log tensorboard needs the tensorboard "
                             "package (pip install tensorboard)\n")
    assert result.stdout == "" and list(tmp_path.iterdir()) == []
