"""Grid report (stepstone.experiments.report) on a synthetic cells.jsonl whose every aggregate is computed by hand.

Each target cell has zero-shot score z: de = z - d, fr = z + d (d = 2 for stack cells, 1 otherwise), en = z + 20.
Seeds of a setup are z-1, z, z+1 (std 1.0) unless noted; costs: train_seconds = 10 * (seed + 1),
peak_rss_mb = 100 + 10 * seed.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stepstone.errors import StepstoneError
from stepstone.experiments import build_report, load_cells, terminal_rows

PNG = b"\x89PNG\r\n\x1a\n"
COST = {"bottleneck": (1000, 0.5, 4_000_000), "lora": (500, 0.25, 2_000_000), "full": (200_000, 100.0, 800_000_000)}


def target(tgt, method, comp, z, seed=0, inter=None, **extra):
    d = 2 if comp == "stack" else 1
    params, percent, size = COST[method]
    name = f"{comp}-{inter}" if inter else comp
    cell = {"id": f"target/{tgt}/{method}/{name}/seed{seed}", "kind": "target", "status": "ok", "error": None,
            "target": tgt, "train_task": "anli", "task": None, "method": method, "composition": comp,
            "intermediate": inter, "seed": seed, "metric": "accuracy",
            "scores": {"en": z + 20.0, "de": z - d, "fr": z + d}, "train_language": "en",
            "trainable_parameters": params, "trainable_percent": percent, "weights_bytes": size,
            "train_seconds": 10.0 * (seed + 1), "peak_rss_mb": 100.0 + 10 * seed, "dev": z + 20.0}
    return {**cell, **extra}


def seeds(tgt, method, comp, z, inter=None, spread=1):
    return [target(tgt, method, comp, z + (s - 1) * spread, seed=s, inter=inter) for s in range(3)]


def retrieval(inter, scores, method=None):
    return {"id": f"retrieval/tatoeba/{inter or 'bare'}", "kind": "retrieval", "status": "ok", "error": None,
            "target": "tatoeba", "train_task": None, "task": None, "method": method,
            "composition": "stack" if inter else "none", "intermediate": inter, "seed": 0 if inter else None,
            "metric": "accuracy", "scores": scores, "train_language": "en", "trainable_parameters": None,
            "trainable_percent": None, "weights_bytes": None, "train_seconds": None, "peak_rss_mb": None, "dev": None}


def intermediate(task):
    return {"id": f"intermediate/{task}/bottleneck/seed0", "kind": "intermediate", "status": "ok", "error": None,
            "target": None, "train_task": None, "task": task, "method": "bottleneck", "composition": "intermediate",
            "intermediate": None, "seed": 0, "metric": None, "scores": None, "train_language": "en",
            "trainable_parameters": 1000, "trainable_percent": 0.5, "weights_bytes": 4_000_000,
            "train_seconds": 50.0, "peak_rss_mb": 300.0, "dev": 70.0}


def grid_cells():
    retried = target("xnli", "bottleneck", "none", 59, seed=0)
    return [
        intermediate("anli"), intermediate("squad"),
        {**retried, "scores": {"en": 0.0, "de": 0.0, "fr": 0.0}},          # superseded: ok with other numbers
        {**retried, "status": "error", "error": "out of memory", "scores": None},  # superseded: an error
        *seeds("xnli", "bottleneck", "none", 60)[1:], retried,              # the last line for seed0 wins
        *seeds("xnli", "bottleneck", "stack", 65, inter="anli"),
        target("xnli", "bottleneck", "stack", 62, inter="squad"),
        *seeds("xnli", "bottleneck", "fuse", 63),
        target("xnli", "bottleneck", "multitask", 61, inter="multitask", peak_rss_mb=None),
        *seeds("pawsx", "bottleneck", "none", 80),
        target("pawsx", "bottleneck", "stack", 78, inter="anli"),
        *seeds("pawsx", "bottleneck", "stack", 83, inter="squad"),
        *seeds("pawsx", "bottleneck", "fuse", 81),
        *seeds("xnli", "lora", "none", 58, spread=2),
        target("xnli", "lora", "stack", 59, inter="anli"),
        *seeds("xnli", "lora", "stack", 61, inter="squad"),
        target("pawsx", "lora", "none", 70),
        {**target("pawsx", "lora", "stack", 0, inter="anli"), "status": "error", "error": "loss diverged",
         "scores": None},
        *seeds("xnli", "full", "full", 70),
        target("xnli", "full", "full-after-intermediate", 72, inter="anli"),
        target("pawsx", "full", "full", 85),
        retrieval(None, {"en": 90.0, "de": 40.0, "fr": 50.0}),
        retrieval("anli", {"en": 91.0, "de": 44.0, "fr": 52.0}, method="bottleneck"),
    ]


def write(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cells.jsonl").write_text("".join(line if isinstance(line, str) else json.dumps(line) + "\n"
                                                for line in lines))
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(write(tmp_path_factory.mktemp("grid"), grid_cells()))


def test_load_cells_keeps_the_last_line_of_each_id(tmp_path):
    cells = load_cells(write(tmp_path, grid_cells()))
    assert len(cells) == len({c["id"] for c in cells}) == len(grid_cells()) - 2
    retried = next(c for c in cells if c["id"] == "target/xnli/bottleneck/none/seed0")
    assert retried["status"] == "ok" and retried["scores"] == {"en": 79.0, "de": 58.0, "fr": 60.0}
    assert sum(c["status"] == "error" for c in cells) == 1
    # an unterminated last line is a record still being written: skipped; with its newline it is an error
    write(tmp_path, grid_cells() + ['{"id": "target/xnli/lora/none/se'])
    assert load_cells(tmp_path) == cells
    write(tmp_path, grid_cells() + ['{"id": "target/xnli/lora/none/se\n'])
    with pytest.raises(StepstoneError, match=f"cells.jsonl:{len(grid_cells()) + 1}: not valid JSON"):
        load_cells(tmp_path)


def test_headline_aggregates_seeds_and_picks_the_best_stack(report):
    got = {(r["target"], r["column"]): (r["intermediate"], r["mean"], r["std"], r["n"], r["english"], r["gain"])
           for r in report.tables["headline"]}
    assert got == {
        ("pawsx", "none [bottleneck]"): (None, 80.0, 1.0, 3, 100.0, None),
        ("pawsx", "none [lora]"): (None, 70.0, 0.0, 1, 90.0, None),
        ("pawsx", "best stack [bottleneck]"): ("squad", 83.0, 1.0, 3, 103.0, 3.0),  # squad 83 beats anli 78
        ("pawsx", "fuse [bottleneck]"): (None, 81.0, 1.0, 3, 101.0, 1.0),
        ("pawsx", "full"): (None, 85.0, 0.0, 1, 105.0, None),
        ("xnli", "none [bottleneck]"): (None, 60.0, 1.0, 3, 80.0, None),
        ("xnli", "none [lora]"): (None, 58.0, 2.0, 3, 78.0, None),
        ("xnli", "best stack [bottleneck]"): ("anli", 65.0, 1.0, 3, 85.0, 5.0),  # anli 65 beats squad 62
        ("xnli", "best stack [lora]"): ("squad", 61.0, 1.0, 3, 81.0, 3.0),      # squad 61 beats anli 59
        ("xnli", "fuse [bottleneck]"): (None, 63.0, 1.0, 3, 83.0, 3.0),
        ("xnli", "multitask [bottleneck]"): ("multitask", 61.0, 0.0, 1, 81.0, 1.0),
        ("xnli", "full"): (None, 70.0, 1.0, 3, 90.0, None),
        ("xnli", "full-after-intermediate"): ("anli", 72.0, 0.0, 1, 92.0, 2.0),  # over plain full fine-tuning
    }
    assert {r["metric"] for r in report.tables["headline"]} == {"accuracy"}
    rows = terminal_rows(report)
    assert rows[0] == ["target", "none [bottleneck]", "none [lora]", "best stack [bottleneck]", "best stack [lora]",
                       "fuse [bottleneck]", "multitask [bottleneck]", "full", "full-after-intermediate"]
    assert rows[1] == ["pawsx", "80.0 ± 1.0 (n=3)", "70.0 ± 0.0 (n=1)", "squad: 83.0 ± 1.0 (n=3) (+3.0)", "–",
                       "81.0 ± 1.0 (n=3) (+1.0)", "–", "85.0 ± 0.0 (n=1)", "–"]
    assert rows[2][0] == "xnli" and rows[2][3] == "anli: 65.0 ± 1.0 (n=3) (+5.0)"
    assert rows[2][6] == "61.0 ± 0.0 (n=1) (+1.0)" and rows[2][8] == "anli: 72.0 ± 0.0 (n=1) (+2.0)"


def test_stack_gain_and_gain_by_language(report):
    assert [(r["method"], r["intermediate"], r["target"], r["gain"]) for r in report.tables["stack_gain"]] == [
        ("bottleneck", "anli", "pawsx", -2.0), ("bottleneck", "anli", "xnli", 5.0),
        ("bottleneck", "squad", "pawsx", 3.0), ("bottleneck", "squad", "xnli", 2.0),
        ("lora", "anli", "xnli", 1.0), ("lora", "squad", "xnli", 3.0)]
    # stack cells spread de/fr by 2 around z, none cells by 1: de gains 1 less than z, fr 1 more
    assert [(r["target"], r["method"], r["intermediate"], r["language"], r["none"], r["best_stack"], r["gain"])
            for r in report.tables["gain_by_language"]] == [
        ("pawsx", "bottleneck", "squad", "en", 100.0, 103.0, 3.0),
        ("pawsx", "bottleneck", "squad", "de", 79.0, 81.0, 2.0),
        ("pawsx", "bottleneck", "squad", "fr", 81.0, 85.0, 4.0),
        ("xnli", "bottleneck", "anli", "en", 80.0, 85.0, 5.0),
        ("xnli", "bottleneck", "anli", "de", 59.0, 63.0, 4.0),
        ("xnli", "bottleneck", "anli", "fr", 61.0, 67.0, 6.0),
        ("xnli", "lora", "squad", "en", 78.0, 81.0, 3.0),
        ("xnli", "lora", "squad", "de", 57.0, 59.0, 2.0),
        ("xnli", "lora", "squad", "fr", 59.0, 63.0, 4.0)]


def test_retrieval_costs_and_failures(report):
    assert report.tables["retrieval"] == [
        {"target": "tatoeba", "model": "bare backbone", "method": None, "intermediate": None, "n": 1,
         "zero_shot": 45.0, "scores": {"en": 90.0, "de": 40.0, "fr": 50.0}, "gain": None},
        {"target": "tatoeba", "model": "anli [bottleneck]", "method": "bottleneck", "intermediate": "anli", "n": 1,
         "zero_shot": 48.0, "scores": {"en": 91.0, "de": 44.0, "fr": 52.0}, "gain": 3.0}]
    costs = {(r["method"], r["composition"]): r for r in report.tables["costs"]}
    assert list(costs) == [("bottleneck", "intermediate"), ("bottleneck", "none"), ("bottleneck", "stack"),
                           ("bottleneck", "fuse"), ("bottleneck", "multitask"), ("full", "full"),
                           ("full", "full-after-intermediate"), ("lora", "none"), ("lora", "stack")]
    assert costs["bottleneck", "intermediate"] == {
        "method": "bottleneck", "composition": "intermediate", "n": 2, "trainable_parameters": 1000.0,
        "trainable_percent": 0.5, "weights_mb": 4.0, "train_seconds": 50.0, "peak_rss_mb": 300.0}
    # 6 cells, seeds 0-2 twice (the superseded lines of the retried cell do not count)
    assert (costs["bottleneck", "none"]["n"], costs["bottleneck", "none"]["train_seconds"],
            costs["bottleneck", "none"]["peak_rss_mb"]) == (6, 20.0, 110.0)
    # 8 cells: seeds 0-2 twice + two seed-0 cells: (60 * 2 + 20) / 8, (330 * 2 + 200) / 8
    assert (costs["bottleneck", "stack"]["n"], costs["bottleneck", "stack"]["train_seconds"],
            costs["bottleneck", "stack"]["peak_rss_mb"]) == (8, 17.5, 107.5)
    assert costs["bottleneck", "multitask"]["peak_rss_mb"] is None  # no value recorded: no mean
    assert costs["lora", "stack"]["n"] == 4 and costs["lora", "stack"]["weights_mb"] == 2.0  # failed cell excluded
    assert costs["full", "full"]["trainable_percent"] == 100.0 and costs["full", "full"]["weights_mb"] == 800.0
    assert report.tables["failures"] == [
        {"id": "target/pawsx/lora/stack-anli/seed0", "kind": "target", "error": "loss diverged"}]


def test_markdown_defines_its_terms_and_links_every_plot(report):
    folder = report.plots[0].parent
    assert sorted(p.name for p in report.plots) == ["heatmap_gain.png", "lang_pawsx.png", "lang_xnli.png"]
    for plot in report.plots:
        assert plot.read_bytes()[:8] == PNG and f"]({plot.name})" in report.markdown
    assert (folder / "report.md").read_text(encoding="utf-8") == report.markdown
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left behind
    md = report.markdown
    for text in ("**Zero-shot score**", "other than the training", "sample standard deviation (ddof=1)",
                 "**Best stack**", "**Gain**", "MB = 10^6 bytes"):
        assert text in md
    assert "| xnli | 60.0 ± 1.0 (n=3) | 58.0 ± 2.0 (n=3) | anli: 65.0 ± 1.0 (n=3) (+5.0) |" in md
    assert ("| model | n | zero-shot | gain | en | de | fr |\n| --- | --- | --- | --- | --- | --- | --- |\n"
            "| bare backbone |") in md
    assert "| bottleneck | stack | 8 | 1.0K | 0.5 | 4.0 | 17.5 | 107.5 |" in md
    assert "| full | full | 4 | 200.0K | 100.0 | 800.0 | 17.5 | 107.5 |" in md
    assert "| anli [bottleneck] | 1 | 48.0 | +3.0 | 91.0 | 44.0 | 52.0 |" in md
    assert "| fr | +4.0 | +6.0 | +4.0 |" not in md and "| fr | +6.0 | +4.0 |" in md
    assert "| target/pawsx/lora/stack-anli/seed0 | loss diverged |" in md
    assert "12 cells" not in md and f"{len(grid_cells()) - 2} cells: {len(grid_cells()) - 3} ok, 1 failed." in md


def test_without_plots_nothing_is_drawn_or_linked(tmp_path):
    report = build_report(write(tmp_path, grid_cells()), plots=False)
    assert report.plots == [] and not list(tmp_path.glob("*.png")) and ".png" not in report.markdown
    assert report.tables["stack_gain"]  # the heatmap's numbers are still in the markdown table
    assert "| bottleneck | anli | xnli | +5.0 |" in report.markdown


def test_a_grid_without_successful_target_cells_still_reports(tmp_path):
    failed = {**target("xnli", "lora", "none", 0), "status": "error", "error": "boom", "scores": None}
    report = build_report(write(tmp_path, [failed]))
    assert report.plots == [] and report.tables["headline"] == [] and report.tables["costs"] == []
    assert report.tables["failures"] == [{"id": failed["id"], "kind": "target", "error": "boom"}]
    assert terminal_rows(report) == [["target"]]
    assert "_no successful target cells_" in report.markdown
    assert "| target/xnli/lora/none/seed0 | boom |" in report.markdown
    assert (tmp_path / "report.md").is_file()


def test_user_errors(tmp_path):
    with pytest.raises(StepstoneError, match="cells.jsonl: not found"):
        build_report(tmp_path / "nowhere")
    with pytest.raises(StepstoneError, match="cells.jsonl: no cells"):
        load_cells(write(tmp_path / "empty", ["\n"]))
    good = target("xnli", "lora", "none", 60)
    cases = {"not valid JSON": '{"id": "x", "kind"\n', "expected a JSON object with a string 'id'": "[1, 2]\n",
             "kind 'adapter' is not one of intermediate, rank, retrieval, target": {**good, "kind": "adapter"},
             "status 'done' is not one of error, ok": {**good, "status": "done"},
             "'train_seconds' must be a number or null": {**good, "train_seconds": "fast"},
             "ok target cell 'target/xnli/lora/none/seed0' needs a 'target' and 'scores'":
                 {**good, "scores": {"de": "high"}}}
    for i, (message, line) in enumerate(cases.items()):
        folder = write(tmp_path / f"bad{i}", [good, line])
        with pytest.raises(StepstoneError, match=f"cells.jsonl:2: {message}"):
            build_report(folder)
        assert not (folder / "report.md").exists()


def test_importing_the_module_loads_no_plotting_library():
    code = "import sys, stepstone.experiments.report; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- runs that did not learn, plots, no empty sections (issue 13)
def dead(cell, dev=52.0):
    """A cell whose run stepstone.health judged not learned (dev at the majority class, flat loss)."""
    reason = f"English dev accuracy {dev:.1f} is at the baseline (chance 50.0 / majority class 51.0)"
    return {**cell, "learning": {"verdict": "not-learned", "reason": reason, "metric": "accuracy", "dev": dev,
                                 "chance": 50.0, "majority": 51.0, "level": 51.0, "prior_loss": 0.693,
                                 "loss_start": 0.7, "loss_end": 0.69, "steps": 40}}


def flagged_cells():
    learned = {"verdict": "learned", "reason": None}
    out = []
    for cell in grid_cells():
        if cell["id"] == "target/xnli/bottleneck/none/seed1" or cell["id"].startswith("intermediate/anli"):
            out.append(dead(cell))
        elif cell["status"] == "ok" and cell["kind"] != "retrieval":
            out.append({**cell, "learning": learned})
        else:
            out.append(cell)
    return out


def test_cells_that_did_not_learn_are_marked(tmp_path):
    report = build_report(write(tmp_path, flagged_cells()))
    marks = {r["column"]: r["not_learned"] for r in report.tables["headline"] if r["target"] == "xnli"}
    assert marks["none [bottleneck]"] == 1 and sum(marks.values()) == 1
    rows = terminal_rows(report)
    assert rows[2][:2] == ["xnli", "60.0 ± 1.0 (n=3) ⚠"] and "⚠" not in "".join(rows[1])  # pawsx: all learned
    assert [(r["intermediate"], r["target"], r["intermediate_not_learned"]) for r in report.tables["stack_gain"]
            if r["method"] == "bottleneck"] == [("anli", "pawsx", True), ("anli", "xnli", True),
                                                ("squad", "pawsx", False), ("squad", "xnli", False)]
    md = report.markdown
    assert f"{len(grid_cells()) - 2} cells: {len(grid_cells()) - 3} ok, 1 failed; 2 did not learn ⚠." in md
    assert "| xnli | 60.0 ± 1.0 (n=3) ⚠ | 58.0 ± 2.0 (n=3) | anli: 65.0 ± 1.0 (n=3) (+5.0) |" in md
    assert "| bottleneck | anli ⚠ | xnli | +5.0 |" in md and "| bottleneck | squad | xnli | +2.0 |" in md
    section = md.split("## Runs that did not learn ⚠\n\n")[1].split("\n\n")[0]
    assert section.splitlines() == [
        "| id | English dev | baseline | loss start -> end | reason |", "| --- | --- | --- | --- | --- |",
        "| intermediate/anli/bottleneck/seed0 | 52.0 | 51.0 | 0.700 -> 0.690 | English dev accuracy 52.0 is at the "
        "baseline (chance 50.0 / majority class 51.0) |",
        "| target/xnli/bottleneck/none/seed1 | 52.0 | 51.0 | 0.700 -> 0.690 | English dev accuracy 52.0 is at the "
        "baseline (chance 50.0 / majority class 51.0) |"]
    assert "**⚠ did not learn**" in md  # defined
    assert [(r["id"], r["kind"], r["dev"], r["level"]) for r in report.tables["not_learned"]] == [
        ("intermediate/anli/bottleneck/seed0", "intermediate", 52.0, 51.0),
        ("target/xnli/bottleneck/none/seed1", "target", 52.0, 51.0)]
    # cells written before the rule existed (no 'learning') are not marked, and there is no such section
    plain = build_report(write(tmp_path / "plain", grid_cells()), plots=False)
    assert "## Runs that did not learn" not in plain.markdown and "⚠ |" not in plain.markdown


def test_a_learning_record_is_checked(tmp_path):
    good = target("xnli", "lora", "none", 60)
    for bad in ({**good, "learning": "no"}, {**good, "learning": {"verdict": "maybe"}}):
        folder = write(tmp_path / str(len(list(tmp_path.iterdir()))), [good, bad])
        with pytest.raises(StepstoneError, match=r"cells.jsonl:2: 'learning' must be null or an object with a "
                                                 r"'verdict' of learned, not-learned, unknown, got "):
            build_report(folder)
        assert not (folder / "report.md").exists()


def test_no_section_is_left_without_rows(tmp_path):
    only = [*seeds("xnli", "lora", "none", 58)]
    report = build_report(write(tmp_path, only))
    headings = [line for line in report.markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## Definitions", "## Headline: zero-shot score", "## Per-language scores", "## Costs"]
    failed = {**target("xnli", "lora", "none", 0), "status": "error", "error": "boom", "scores": None}
    report = build_report(write(tmp_path / "failed", [failed]))
    assert [line for line in report.markdown.splitlines() if line.startswith("## ")] == [
        "## Definitions", "## Headline: zero-shot score", "## Failed cells"]
    assert "English score (mean over seeds)" not in report.markdown and "_none_" not in report.markdown


def test_heatmap_axes_and_readable_cell_text():
    from stepstone.experiments.report import _heatmap_figure, _text_colour

    assert _text_colour((0.40, 0.0, 0.12, 1.0)) == "white"  # RdBu's dark red end
    assert _text_colour((0.02, 0.19, 0.38, 1.0)) == "white"  # its dark blue end
    assert _text_colour((0.97, 0.97, 0.97, 1.0)) == "black"  # its white middle
    assert _text_colour((0.5, 0.5, 0.5)) == "black"  # mid grey: luminance 0.214 >= 0.179
    rows = [{"method": "bottleneck", "intermediate": "anli", "target": "udpos", "metric": "accuracy", "gain": -40.0,
             "intermediate_not_learned": True},
            {"method": "bottleneck", "intermediate": "sst2", "target": "udpos", "metric": "accuracy", "gain": -2.0,
             "intermediate_not_learned": False},
            {"method": "bottleneck", "intermediate": "sst2", "target": "panx", "metric": "f1", "gain": 40.0,
             "intermediate_not_learned": False}]
    fig = _heatmap_figure(rows)
    ax, colorbar = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("target task (zero-shot metric)", "intermediate task (stacked)")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["panx\n(f1)", "udpos\n(accuracy)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["anli ⚠", "sst2"]
    assert ax.get_title() == "Stack gain [bottleneck]"
    assert fig.get_suptitle() == "⚠: the intermediate adapter did not learn"
    assert ax.images[0].cmap.get_bad().tolist() == [0.85, 0.85, 0.85, 1.0]  # no cell: grey, not white (a gain of 0)
    assert colorbar.get_ylabel() == "zero-shot gain over the\ntarget adapter alone (points)"
    assert {t.get_text(): t.get_color() for t in ax.texts} == {"-40.0": "white", "-2.0": "black", "+40.0": "white"}


def test_bar_plot_names_its_metric_and_error_bars():
    from stepstone.experiments.report import _bars_figure

    fig = _bars_figure("udpos", "accuracy", {"none [bottleneck]": ({"en": (80.0, 1.0), "de": (70.0, 2.0)}, 3),
                                            "full": ({"en": (82.0, 0.0), "de": (71.0, 0.0)}, 1)})
    (ax,) = fig.axes
    assert (ax.get_title(), ax.get_ylabel(), ax.get_xlabel()) == (
        "udpos: accuracy per language", "accuracy (%)", "evaluation language (en: the training language)")
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "error bars: ± std over n seeds"
    assert [t.get_text() for t in legend.get_texts()] == ["none [bottleneck] (n=3)", "full (n=1)"]
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and bars[0].errorbar is not None and bars[1].errorbar is None  # one seed: no error bar
