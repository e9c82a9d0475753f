"""The report's rank section (stepstone.experiments.rank_report) on a synthetic grid worked out by hand.

Each target cell has zero-shot score z: de = z - 1, fr = z + 1, en = z + 20. xnli [bottleneck]: none z = 60
(seed 0), 62 (seed 1); Stack anli 65, 67 (seeds 0, 1: the best stack got every seed), squad 62, sst2 59 (seed 0
only), tydiqa failed. So the common seed is 0 and the gains are anli +5, squad +2, none 0, sst2 -1 (anli's seed 1
does not count). Its rank cell: logme orders the candidates as their gains (Spearman 1, NDCG 1, regret 0), semb
reverses them (Spearman -1, regret 5 - (-1) = 6; relevance = gain + 1: NDCG@3 = (0 + 1/log2 3 + 3/2) / (6 +
3/log2 3 + 1/2)). pawsx [bottleneck]: none 80, anli 78 (-2), squad 83 (+3); logme anli 0.9, squad 0.5, none 0.1
(rho = 1 - 6 * 6 / 24 = -0.5, relevance anli 0, none 2, squad 5: NDCG@3 = (5/log2 3 + 2/2) / (5 + 2/log2 3),
regret 3 - (-2) = 5); semb scored nothing there.
"""
from __future__ import annotations

import json
import math

import pytest

from stepstone.experiments import build_report
from stepstone.experiments.rank_report import TITLE, _scatter_figure
from stepstone.ranking import Estimator, Ranking, Row, Score

PNG = b"\x89PNG\r\n\x1a\n"
L3 = math.log2(3)


def target(tgt, comp, z, seed=0, inter=None, method="bottleneck", **extra):
    name = f"{comp}-{inter}" if inter else comp
    return {"id": f"target/{tgt}/{method}/{name}/seed{seed}", "kind": "target", "status": "ok", "error": None,
            "target": tgt, "method": method, "composition": comp, "intermediate": inter, "seed": seed,
            "metric": "accuracy", "scores": {"en": z + 20.0, "de": z - 1.0, "fr": z + 1.0}, "train_language": "en",
            "dev": z + 20.0, **extra}


def failed(cell, error):
    return {**cell, "status": "error", "error": error, "scores": None, "dev": None}


def rank_cell(tgt, scores, method="bottleneck"):
    """A rank cell as the grid records it: candidate -> {estimator: score or None (not scored)}."""
    estimators = tuple(Estimator(e) for e in dict.fromkeys(e for s in scores.values() for e in s))
    rows = tuple(Row(c, None if c == "none" else c, method,
                     {e: Score(v) if v is not None else Score(None, note="no training texts") for e, v in s.items()})
                 for c, s in scores.items())
    ranking = Ranking(tgt, "tiny", 100, estimators, rows)
    return {"id": f"rank/{tgt}/{method}", "kind": "rank", "status": "ok", "error": None, "target": tgt,
            "method": method, "ranking": ranking.to_dict()}


XNLI_RANK = rank_cell("xnli", {"none": {"logme": -0.3, "semb": 0.3}, "anli": {"logme": -0.1, "semb": 0.1},
                               "squad": {"logme": -0.2, "semb": 0.2}, "sst2": {"logme": -0.4, "semb": 0.4},
                               "tydiqa": {"logme": -0.25, "semb": 0.5}})
PAWSX_RANK = rank_cell("pawsx", {"none": {"logme": 0.1, "semb": None}, "anli": {"logme": 0.9, "semb": None},
                                 "squad": {"logme": 0.5, "semb": None}})


def target_cells():
    return [target("xnli", "none", 60), target("xnli", "none", 62, seed=1),
            target("xnli", "stack", 65, inter="anli"), target("xnli", "stack", 67, seed=1, inter="anli"),
            target("xnli", "stack", 62, inter="squad"), target("xnli", "stack", 59, inter="sst2"),
            failed(target("xnli", "stack", 0, inter="tydiqa"), "loss diverged"),
            target("pawsx", "none", 80), target("pawsx", "stack", 78, inter="anli"),
            target("pawsx", "stack", 83, inter="squad")]


def grid_cells():
    return [*target_cells(), XNLI_RANK, PAWSX_RANK]


def write(folder, cells):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells))
    return folder


def section(markdown: str) -> list[str]:
    """The lines of the rank section, up to the next section."""
    return markdown.split(f"## {TITLE}\n\n")[1].split("\n## ")[0].splitlines()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(write(tmp_path_factory.mktemp("grid"), grid_cells()))


def test_agreement_table(report):
    got = [(r["target"], r["method"], r["estimator"], r["n"], r["seeds"], r["spearman"], r["ndcg_at_3"],
            r["regret_at_1"], r["picked"], r["best"], r["note"]) for r in report.tables["rank_agreement"]]
    assert got == [
        ("pawsx", "bottleneck", "logme", 3, [0], -0.5, pytest.approx((5 / L3 + 1) / (5 + 2 / L3), abs=1e-15), 5.0,
         "anli", "squad", None),
        ("pawsx", "bottleneck", "semb", 0, [0], None, None, None, None, None, None),
        ("xnli", "bottleneck", "logme", 4, [0], 1.0, 1.0, 0.0, "anli", "anli", None),
        ("xnli", "bottleneck", "semb", 4, [0], -1.0, pytest.approx((1 / L3 + 3 / 2) / (6 + 3 / L3 + 1 / 2), abs=1e-15),
         6.0, "sst2", "anli", None)]


def test_candidate_table(report):
    rows = report.tables["rank_candidates"]
    assert set(rows[0]) == {"target", "method", "candidate", "intermediate", "estimator", "score", "rank", "gain",
                            "left_out"}
    got = {(r["target"], r["candidate"], r["estimator"]): (r["intermediate"], r["score"], r["rank"], r["gain"],
                                                            r["left_out"]) for r in rows}
    assert len(got) == len(rows) == 5 * 2 + 3 * 2
    assert {k[1:]: v for k, v in got.items() if k[0] == "xnli"} == {
        ("none", "logme"): (None, -0.3, 3, 0.0, None), ("none", "semb"): (None, 0.3, 2, 0.0, None),
        ("anli", "logme"): ("anli", -0.1, 1, 5.0, None), ("anli", "semb"): ("anli", 0.1, 4, 5.0, None),
        ("squad", "logme"): ("squad", -0.2, 2, 2.0, None), ("squad", "semb"): ("squad", 0.2, 3, 2.0, None),
        ("sst2", "logme"): ("sst2", -0.4, 4, -1.0, None), ("sst2", "semb"): ("sst2", 0.4, 1, -1.0, None),
        # a failed Stack cell: scored, but no measured gain and no rank
        ("tydiqa", "logme"): ("tydiqa", -0.25, None, None, "its Stack cell failed: loss diverged"),
        ("tydiqa", "semb"): ("tydiqa", 0.5, None, None, "its Stack cell failed: loss diverged")}
    assert got["pawsx", "squad", "semb"] == ("squad", None, None, 3.0, None)  # not scored by semb


def test_markdown_section(report):
    lines = section(report.markdown)
    assert lines[0].startswith("- **Measured gain** of a candidate: the mean zero-shot score of its Stack cells")
    for term in ("- **Score (rank)**", "- **Spearman**", "- **NDCG@3**", "- **regret@1**", "- **mean**"):
        assert sum(line.startswith(term) for line in lines) == 1
    assert "minus the smallest measured gain among the candidates" in " ".join(lines)
    tables = lines[lines.index("| target | method | estimator | n | Spearman | NDCG@3 | regret@1 | picked | "
                               "best measured |"):]
    assert tables == [
        "| target | method | estimator | n | Spearman | NDCG@3 | regret@1 | picked | best measured |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        "| pawsx | bottleneck | logme | 3 | -0.50 | 0.66 | 5.0 | anli | squad |",
        "| pawsx | bottleneck | semb | 0 | – | – | – | – | – |",
        "| xnli | bottleneck | logme | 4 | 1.00 | 1.00 | 0.0 | anli | anli |",
        "| xnli | bottleneck | semb | 4 | -1.00 | 0.25 | 6.0 | sst2 | anli |",
        "| mean | – | logme | – | 0.25 | 0.83 | 2.5 | – | – |",  # (1 - 0.5) / 2, (1 + 0.663) / 2, (0 + 5) / 2
        "| mean | – | semb | – | -1.00 | 0.25 | 6.0 | – | – |",  # pawsx has no semb measures: xnli's alone
        "",
        "**pawsx [bottleneck]** (seed 0)",
        "",
        "| candidate | measured gain | logme | semb |",
        "| --- | --- | --- | --- |",
        "| squad | +3.0 | 0.500 (2) | – |",
        "| none | +0.0 | 0.100 (3) | – |",
        "| anli | -2.0 | 0.900 (1) | – |",
        "",
        "![pawsx bottleneck: estimator score vs measured gain](rank_pawsx_bottleneck.png)",
        "",
        "**xnli [bottleneck]** (seed 0)",
        "",
        "| candidate | measured gain | logme | semb |",
        "| --- | --- | --- | --- |",
        "| anli | +5.0 | -0.100 (1) | 0.100 (4) |",
        "| squad | +2.0 | -0.200 (2) | 0.200 (3) |",
        "| none | +0.0 | -0.300 (3) | 0.300 (2) |",
        "| sst2 | -1.0 | -0.400 (4) | 0.400 (1) |",
        "| tydiqa | – | -0.250 | 0.500 |",
        "",
        "Left out (no measured gain): tydiqa (its Stack cell failed: loss diverged).",
        "",
        "![xnli bottleneck: estimator score vs measured gain](rank_xnli_bottleneck.png)"]
    headings = [line for line in report.markdown.splitlines() if line.startswith("## ")]
    assert headings.index(f"## {TITLE}") == headings.index("## Gain of the best stack by language") + 1


def test_plots(report, tmp_path):
    folder = report.plots[0].parent
    assert sorted(p.name for p in report.plots if p.name.startswith("rank_")) == [
        "rank_pawsx_bottleneck.png", "rank_xnli_bottleneck.png"]
    for plot in report.plots:
        assert plot.read_bytes()[:8] == PNG and f"]({plot.name})" in report.markdown
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # written atomically: no temporary files
    plain = build_report(write(tmp_path, grid_cells()), plots=False)
    assert plain.plots == [] and not list(tmp_path.glob("*.png")) and ".png" not in plain.markdown
    lines = section(report.markdown)
    assert section(plain.markdown) == [line for i, line in enumerate(lines)  # each plot's line and the blank after it
                                       if ".png" not in line and not (i and ".png" in lines[i - 1])][:-1]
    assert plain.tables["rank_agreement"] == report.tables["rank_agreement"]


def test_scatter_figure():
    from stepstone.experiments.rank_report import rank_tables

    tables = rank_tables([c for c in _records(grid_cells()) if c.target == "xnli"])
    fig = _scatter_figure("xnli", "bottleneck", tables["rank_agreement"], tables["rank_candidates"])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["logme: Spearman 1.00", "semb: Spearman -1.00"]
    assert [ax.get_xlabel() for ax in axes] == ["logme score (higher: predicted better)",
                                                "semb score (higher: predicted better)"]
    assert axes[0].get_ylabel() == "measured zero-shot gain\nover none (points)" and axes[1].get_ylabel() == ""
    assert fig.get_suptitle() == "xnli [bottleneck]: estimator score vs measured gain"
    for ax, scores in zip(axes, ({"anli": -0.1, "squad": -0.2, "none": -0.3, "sst2": -0.4},
                                 {"anli": 0.1, "squad": 0.2, "none": 0.3, "sst2": 0.4})):
        gains = {"anli": 5.0, "squad": 2.0, "none": 0.0, "sst2": -1.0}
        assert {t.get_text(): tuple(t.xy) for t in ax.texts} == {n: (scores[n], gains[n]) for n in gains}
        assert sorted(map(tuple, ax.collections[0].get_offsets().tolist())) == sorted(
            (scores[n], gains[n]) for n in gains)


def _records(cells):
    from stepstone.experiments import CellRecord

    return [CellRecord.from_json(json.dumps(c), "test") for c in cells]


def test_every_seed_every_candidate_has(tmp_path):
    """With squad and sst2 at seed 1 too, both seeds count: none 61, anli 66 (+5), squad 62.5 (+1.5), sst2 59.5."""
    cells = [*target_cells(), target("xnli", "stack", 63, seed=1, inter="squad"),
             target("xnli", "stack", 60, seed=1, inter="sst2"), XNLI_RANK]
    report = build_report(write(tmp_path, cells), plots=False)
    assert {r["estimator"]: r["seeds"] for r in report.tables["rank_agreement"]} == {"logme": [0, 1], "semb": [0, 1]}
    assert {r["candidate"]: r["gain"] for r in report.tables["rank_candidates"]} == {
        "none": 0.0, "anli": 5.0, "squad": 1.5, "sst2": -1.5, "tydiqa": None}
    assert "**xnli [bottleneck]** (seeds 0, 1)" in section(report.markdown)


def test_no_gains_without_none_cells(tmp_path):
    for name, cells, note in (
            ("missing", [c for c in target_cells() if c["composition"] != "none"], "no successful `none` cell"),
            ("other seed", [failed(c, "boom") if c["id"] == "target/xnli/bottleneck/none/seed0" else c
                            for c in target_cells()],
             "no seed at which the `none` cell and every candidate's Stack cell succeeded")):
        report = build_report(write(tmp_path / name.replace(" ", "_"), [*cells, XNLI_RANK]))
        assert [(r["n"], r["seeds"], r["spearman"], r["picked"], r["note"]) for r in report.tables["rank_agreement"]] \
            == [(0, [], None, None, note)] * 2
        assert all(r["gain"] is None and r["rank"] is None for r in report.tables["rank_candidates"])
        lines = section(report.markdown)
        at = lines.index("**xnli [bottleneck]**")
        assert lines[at + 2] == f"No measured gains: {note}."
        assert "| anli | – | -0.100 | 0.100 |" in lines and not any("rank_" in line for line in lines)
        assert not (tmp_path / name.replace(" ", "_") / "rank_xnli_bottleneck.png").exists()


def test_a_candidate_without_a_stack_cell(tmp_path):
    cells = [c for c in target_cells() if c.get("intermediate") != "tydiqa"]
    report = build_report(write(tmp_path, [*cells, XNLI_RANK]), plots=False)
    assert "Left out (no measured gain): tydiqa (no Stack cell with tydiqa)." in section(report.markdown)
    assert [r["n"] for r in report.tables["rank_agreement"]] == [4, 4]


def test_grids_without_rank_cells_report_as_before(tmp_path):
    old = build_report(write(tmp_path / "old", target_cells()))
    assert old.tables["rank_agreement"] == old.tables["rank_candidates"] == []
    assert TITLE not in old.markdown and not [p for p in old.plots if p.name.startswith("rank_")]
    # with the rank cells, everything outside the new section is what it was (but the cell count)
    new = build_report(write(tmp_path / "new", grid_cells()))
    text = "\n".join([f"## {TITLE}", "", *section(new.markdown), "", ""])
    assert text in new.markdown
    assert new.markdown.replace(text, "").replace("# Transfer report: new\n\n12 cells: 11 ok",
                                                  "# Transfer report: old\n\n10 cells: 9 ok") == old.markdown
    assert [p.name for p in new.plots if not p.name.startswith("rank_")] == [p.name for p in old.plots]
    # a failed rank cell: no section, listed with the failures
    broken = {**XNLI_RANK, "status": "error", "error": "out of memory", "ranking": None}
    report = build_report(write(tmp_path / "failed", [*target_cells(), broken]), plots=False)
    assert TITLE not in report.markdown and report.tables["rank_agreement"] == []
    assert "| rank/xnli/bottleneck | out of memory |" in report.markdown


def test_the_agreement_benchmark_reads_measures_and_costs_from_the_grid(tmp_path):
    """benchmarks/rank_agreement.py: the report's measures, and each estimator's seconds per candidate against the
    mean training seconds of the target's Stack cells."""
    import subprocess
    import sys
    from pathlib import Path

    timed = rank_cell("pawsx", {"none": {"logme": 0.1}, "anli": {"logme": 0.9}, "squad": {"logme": 0.5}})
    for row, seconds in zip(timed["ranking"]["rows"], (1.0, 2.0, 3.0)):
        row["scores"]["logme"]["seconds"] = seconds
    cells = [target("pawsx", "none", 80, train_seconds=10.0), target("pawsx", "stack", 78, inter="anli", train_seconds=20.0),
             target("pawsx", "stack", 83, inter="squad", train_seconds=40.0), timed]
    grid = write(tmp_path / "grid", cells)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "rank_agreement.py"
    done = subprocess.run([sys.executable, str(script), str(grid), "--out", str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    (pawsx,) = result["targets"]
    assert pawsx["cost"] == {"stack_train_seconds": 30.0, "stack_cells": 2, "estimators": {"logme": {
        "seconds": 6.0, "seconds_per_candidate": 2.0, "candidates": 3, "cached": 0, "of_one_training": 0.0667}}}
    assert result["mean"]["logme"] == {"spearman": -0.5, "ndcg_at_3": round((5 / L3 + 1) / (5 + 2 / L3), 4),
                                       "regret_at_1": 5.0, "of_one_training": 0.0667}
    assert done.stdout.splitlines() == [f"logme: Spearman -0.5, NDCG@3 {round((5 / L3 + 1) / (5 + 2 / L3), 4)}, "
                                        "regret@1 5.0, cost per candidate 0.0667 of one target training"]
    empty = write(tmp_path / "empty", target_cells())
    done = subprocess.run([sys.executable, str(script), str(empty), "--out", str(tmp_path / "no.json")],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr.strip()) == (2, f"error: {empty}: no successful rank cell (run the grid "
                                                         "with `rank:` set)")
    assert not (tmp_path / "no.json").exists()


def test_a_tie_for_the_top_counts_the_mean_gain_and_says_so(tmp_path):
    """proxy ties none and anli at the top (a short training that learned nothing): regret@1 = 3 - mean(0, -2) = 4,
    NDCG@3 shares positions 1-2 at relevance (2 + 0) / 2 = 1 (relevance none 2, anli 0, squad 5)."""
    tie = rank_cell("pawsx", {"none": {"proxy": 34.0}, "anli": {"proxy": 34.0}, "squad": {"proxy": 30.0}})
    grid = write(tmp_path / "grid", [target("pawsx", "none", 80), target("pawsx", "stack", 78, inter="anli"),
                                     target("pawsx", "stack", 83, inter="squad"), tie])
    report = build_report(grid, plots=False)
    (row,) = report.tables["rank_agreement"]
    assert (row["picked"], row["tied"], row["regret_at_1"]) == ("anli", ["anli", "none"], 4.0)
    assert row["ndcg_at_3"] == pytest.approx((1 * (1 + 1 / L3) + 5 / 2) / (5 + 2 / L3), abs=1e-12)
    assert "| pawsx | bottleneck | proxy | 3 | -0.87 | 0.66 | 4.0 | anli (tied with 1 more) | squad |" in section(
        report.markdown)


def test_the_committed_rank_grid_reports_its_rank_section_again(tmp_path):
    """docs/results/rank-cpu-small: its cells.jsonl gives the rank section of its committed report.md (README quotes
    its numbers)."""
    import shutil
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "docs" / "results" / "rank-cpu-small"
    shutil.copy(committed / "cells.jsonl", tmp_path / "cells.jsonl")
    report = build_report(tmp_path, plots=False)
    lines = [line for line in section(report.markdown) if not line.startswith("![")]
    expected = [line for line in section((committed / "report.md").read_text(encoding="utf-8"))
                if not line.startswith("![")]
    assert [line for line in lines if line] == [line for line in expected if line]
    means = {r["estimator"]: round(r["spearman"], 2) for r in report.tables["rank_agreement"] if r["target"] == "panx"}
    assert means == {"logme": -0.6, "semb": 0.1, "proxy": 0.41}
