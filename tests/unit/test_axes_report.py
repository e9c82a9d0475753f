"""The report's sections for issue 16's grid axes (stepstone.experiments.axes_report, backbone_report) on
hand-written cells.jsonl records whose every number is worked out here.

xnli [bottleneck], languages en de fr sw hi (zero-shot = mean of de fr sw hi): none 50 (de 60 fr 60 sw 40 hi 40);
Stack anli 54 (de 66 fr 64 sw 42 hi 44: gains +6 +4 +2 +4; best stack by dev), Stack sst2 51; multitask 53;
the chain sst2 -> anli 55 and 57 (seeds 0, 1: 56 ± sqrt 2); stack-size anli at 1000 examples 52 (de 64 fr 62
sw 41 hi 41: high +3, low +1) and at 100 examples 50 (+0). A small language table (TABLE) stands in for
stepstone.languages: de, fr high; sw, hi low. Perturbed and domain scores are on the none and anli cells; xquad's
none cells carry exact_match as a secondary metric.
"""
from __future__ import annotations

import json
import math

import pytest

from stepstone import languages
from stepstone.experiments import build_report, terminal_rows

PNG = b"\x89PNG\r\n\x1a\n"
TABLE = {"de": ("high", "germanic", "latin"), "fr": ("high", "romance", "latin"),
         "sw": ("low", "bantu", "latin"), "hi": ("low", "indo-aryan", "devanagari")}
TIERS = ("high", "medium", "low")


def group_of(code, by):
    return TABLE[code][languages.GROUPINGS.index(by)] if code in TABLE else languages.UNKNOWN


def group_scores(scores, by):
    groups: dict[str, list[float]] = {}
    for code, value in scores.items():
        groups.setdefault(group_of(code, by), []).append(value)
    order = sorted(groups, key=lambda g: (TIERS.index(g) if g in TIERS else 9, g))
    return {g: sum(groups[g]) / len(groups[g]) for g in order}


@pytest.fixture(autouse=True)
def language_table(monkeypatch):
    monkeypatch.setattr(languages, "group_of", group_of)
    monkeypatch.setattr(languages, "group_scores", group_scores)


def scores(de, fr, sw, hi, en=80.0):
    return {"en": en, "de": de, "fr": fr, "sw": sw, "hi": hi}


def target(tgt, comp, values, seed=0, inter=None, method="bottleneck", **extra):
    name = f"{comp}-{inter}" if inter else comp
    return {"id": f"target/{tgt}/{method}/{name}/seed{seed}", "kind": "target", "status": "ok", "error": None,
            "target": tgt, "method": method, "composition": comp, "intermediate": inter, "seed": seed,
            "metric": "accuracy", "scores": values, "train_language": "en", "dev": values.get("en"),
            "train_seconds": 10.0, **extra}


def intermediate(task, **extra):
    tag = "-".join(str(v) for v in extra.values() if not isinstance(v, list)) or "-then-".join(extra.get("chain", []))
    return {"id": f"intermediate/bottleneck/{task}{'/' + tag if tag else ''}", "kind": "intermediate",
            "status": "ok", "error": None, "task": task, "method": "bottleneck", "composition": "intermediate",
            "seed": 0, "train_language": "en", "train_seconds": 50.0, "dev": 70.0, **extra}


NONE_PERTURBED = {"typo:0.05": scores(50.0, 50.0, 30.0, 30.0, en=70.0), "words:0.1": scores(55.0, 55.0, 35.0, 35.0)}
ANLI_PERTURBED = {"typo:0.05": scores(60.0, 60.0, 36.0, 36.0, en=75.0)}


def grid_cells():
    return [
        intermediate("anli", intermediate_size=2000), intermediate("sst2"), intermediate("multitask"),
        intermediate("anli", chain=["sst2", "anli"]),
        intermediate("anli", intermediate_size=1000), intermediate("anli", intermediate_size=100),
        target("xnli", "none", scores(60.0, 60.0, 40.0, 40.0), perturbed=NONE_PERTURBED, domain={"reviews": 45.0}),
        target("xnli", "stack", scores(66.0, 64.0, 42.0, 44.0, en=85.0), inter="anli", perturbed=ANLI_PERTURBED,
               domain={"reviews": 50.0}),
        target("xnli", "stack", scores(61.0, 61.0, 41.0, 41.0, en=82.0), inter="sst2"),
        target("xnli", "multitask", scores(63.0, 63.0, 43.0, 43.0), inter="multitask"),
        *(target("xnli", "sequential", scores(55.0 + 2 * s, 55.0 + 2 * s, 55.0 + 2 * s, 55.0 + 2 * s, en=90.0),
                 seed=s, inter="sst2-then-anli", chain=["sst2", "anli"]) for s in range(2)),
        target("xnli", "stack-size", scores(64.0, 62.0, 41.0, 41.0, en=95.0), inter="anli-1000", intermediate="anli",
               intermediate_size=1000),
        target("xnli", "stack-size", scores(60.0, 60.0, 40.0, 40.0, en=96.0), inter="anli-100", intermediate="anli",
               intermediate_size=100),
        *(target("xquad", "none", {"en": 80.0, "de": 50.0 + 2 * s, "fr": 60.0 + 2 * s}, seed=s, metric="f1",
                 secondary={"exact_match": {"en": 70.0, "de": 40.0 + 2 * s, "fr": 50.0 + 2 * s}}) for s in range(2)),
    ]


def write(folder, cells):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells))
    return folder


def section(markdown: str, title: str, level: str = "##") -> list[str]:
    """The lines of a section up to the next one of its level, without the blank line before it."""
    return markdown.split(f"{level} {title}\n\n")[1].split(f"\n{level} ")[0].rstrip("\n").splitlines()


@pytest.fixture
def report(tmp_path):
    return build_report(write(tmp_path, grid_cells()))


def test_the_headline_and_the_old_sections_leave_out_sequential_and_size_cells(report):
    assert terminal_rows(report)[0] == ["target", "none [bottleneck]", "best stack [bottleneck]",
                                        "multitask [bottleneck]"]
    assert {(r["target"], r["column"], r["intermediate"], r["mean"]) for r in report.tables["headline"]} == {
        ("xnli", "none [bottleneck]", None, 50.0), ("xnli", "best stack [bottleneck]", "anli", 54.0),
        ("xnli", "multitask [bottleneck]", "multitask", 53.0), ("xquad", "none [bottleneck]", None, 56.0)}
    assert [(r["intermediate"], r["gain"]) for r in report.tables["stack_gain"]] == [("anli", 4.0), ("sst2", 1.0)]
    costs = {r["composition"]: r["n"] for r in report.tables["costs"]}
    assert costs == {"intermediate": 3, "none": 3, "stack": 2, "multitask": 1}  # anli (2000), sst2, multitask


def test_a_chain_adapter_that_did_not_learn_does_not_flag_the_plain_stack(tmp_path):
    dead = {"verdict": "not-learned", "reason": "flat", "metric": "accuracy", "dev": 33.0, "level": 33.0,
            "loss_start": 1.1, "loss_end": 1.1}
    cells = [{**c, "learning": dead} if c.get("chain") and c["kind"] == "intermediate" else c for c in grid_cells()]
    report = build_report(write(tmp_path, cells), plots=False)
    assert not any(r["intermediate_not_learned"] for r in report.tables["stack_gain"])
    assert [r["id"] for r in report.tables["not_learned"]] == ["intermediate/bottleneck/anli/sst2-then-anli"]


def test_sequential_vs_joint_vs_single_task(report):
    assert [(r["setup"], r["intermediate"], r["trained_on"], r["mean"], r["n"], r["gain"])
            for r in report.tables["sequential"]] == [
        ("sequential", "sst2-then-anli", ["sst2", "anli"], 56.0, 2, 6.0),
        ("multitask", "multitask", ["anli", "sst2"], 53.0, 1, 3.0),
        ("stack", "sst2", ["sst2"], 51.0, 1, 1.0), ("stack", "anli", ["anli"], 54.0, 1, 4.0),
        ("none", None, [], 50.0, 1, None)]
    assert report.tables["sequential"][0]["std"] == pytest.approx(math.sqrt(2), abs=1e-12)
    lines = section(report.markdown, "Sequential vs joint vs single-task")
    assert lines[2:] == [
        "**xnli [bottleneck]**", "",
        "| setup | trained on | zero-shot | gain vs none |", "| --- | --- | --- | --- |",
        "| sequential | sst2 → anli | 56.0 ± 1.4 (n=2) | +6.0 |",
        "| joint (multitask) | anli, sst2 | 53.0 ± 0.0 (n=1) | +3.0 |",
        "| single-task (stack) | sst2 | 51.0 ± 0.0 (n=1) | +1.0 |",
        "| single-task (stack) | anli | 54.0 ± 0.0 (n=1) | +4.0 |",
        "| target only (none) | – | 50.0 ± 0.0 (n=1) | – |"]


def test_a_chain_starting_on_a_task_the_grid_does_not_stack(tmp_path):
    """tydiqa -> anli: the grid trains tydiqa as a plain intermediate cell for the chain alone; the multitask adapter
    did not train on it, and there is no single-task Stack of it to show."""
    chain = target("xnli", "sequential", scores(52.0, 52.0, 52.0, 52.0), inter="tydiqa-then-anli",
                   chain=["tydiqa", "anli"])
    cells = [*grid_cells(), intermediate("tydiqa"), intermediate("anli", chain=["tydiqa", "anli"]), chain]
    report = build_report(write(tmp_path, cells), plots=False)
    assert [(r["setup"], r["intermediate"], r["trained_on"], r["gain"]) for r in report.tables["sequential"]] == [
        ("sequential", "sst2-then-anli", ["sst2", "anli"], 6.0),
        ("sequential", "tydiqa-then-anli", ["tydiqa", "anli"], 2.0),
        ("multitask", "multitask", ["anli", "sst2"], 3.0), ("stack", "sst2", ["sst2"], 1.0),
        ("stack", "anli", ["anli"], 4.0), ("none", None, [], None)]


def test_intermediate_data_size_table_and_plot(report):
    assert [(r["size"], r["label"], r["examples"], r["n"], r["mean"], r["gain"])
            for r in report.tables["intermediate_size"]] == [
        (100, "100", 100, 1, 50.0, 0.0), (1000, "1000", 1000, 1, 52.0, 2.0), (None, "all", 2000, 1, 54.0, 4.0)]
    assert [(r["label"], r["group"], r["gain"], r["languages"]) for r in report.tables["intermediate_size_groups"]] == [
        ("100", "high", 0.0, ["de", "fr"]), ("100", "low", 0.0, ["hi", "sw"]),
        ("1000", "high", 3.0, ["de", "fr"]), ("1000", "low", 1.0, ["hi", "sw"]),
        ("all", "high", 5.0, ["de", "fr"]), ("all", "low", 3.0, ["hi", "sw"])]
    lines = section(report.markdown, "Intermediate data size")
    assert lines[2:9] == [
        "**xnli [bottleneck], intermediate anli**", "",
        "| size | n | zero-shot | gain | gain high | gain low |", "| --- | --- | --- | --- | --- | --- |",
        "| 100 | 1 | 50.0 ± 0.0 | +0.0 | +0.0 (2) | +0.0 (2) |",
        "| 1000 | 1 | 52.0 ± 0.0 | +2.0 | +3.0 (2) | +1.0 (2) |",
        "| all (2000) | 1 | 54.0 ± 0.0 | +4.0 | +5.0 (2) | +3.0 (2) |"]
    # and per language, largest CC-100 data first (the real table's GiB: de 66.6, fr 56.8, hi 20.2, sw 1.6)
    assert [(r["label"], r["language"], r["gain"]) for r in report.tables["intermediate_size_languages"]
            if r["label"] == "1000"] == [("1000", "de", 4.0), ("1000", "fr", 2.0), ("1000", "hi", 1.0),
                                         ("1000", "sw", 1.0)]
    assert lines[9:15] == [
        "", "| size | de (66.6 GiB) | fr (56.8 GiB) | hi (20.2 GiB) | sw (1.6 GiB) |", "| --- | --- | --- | --- | --- |",
        "| 100 | +0.0 | +0.0 | +0.0 | +0.0 |", "| 1000 | +4.0 | +2.0 | +1.0 | +1.0 |", "| all (2000) | +6.0 | +4.0 | +4.0 | +2.0 |"]
    plot = next(p for p in report.plots if p.name == "size_xnli_bottleneck_anli.png")
    assert plot.read_bytes()[:8] == PNG and "](size_xnli_bottleneck_anli.png)" in report.markdown


def test_a_sized_adapter_that_did_not_learn_is_marked(tmp_path):
    dead = {"verdict": "not-learned", "reason": "flat", "metric": "accuracy", "dev": 33.0, "level": 33.0,
            "loss_start": 1.1, "loss_end": 1.1}
    cells = [{**c, "learning": dead} if c["id"] == "intermediate/bottleneck/anli/100" else c for c in grid_cells()]
    report = build_report(write(tmp_path, cells), plots=False)
    assert [r["intermediate_not_learned"] for r in report.tables["intermediate_size"]] == [True, False, False]
    assert "| 100 ⚠ | 1 | 50.0 ± 0.0 | +0.0 | +0.0 (2) | +0.0 (2) |" in report.markdown
    assert not any(r["intermediate_not_learned"] for r in report.tables["stack_gain"])  # the plain anli learned


def test_size_plot_axes():
    from stepstone.experiments.axes_report import _size_figure

    rows = [{"size": 100, "label": "100", "examples": 100, "gain": 0.0},
            {"size": 1000, "label": "1000", "examples": 1000, "gain": 2.0},
            {"size": None, "label": "all", "examples": None, "gain": 4.0}]
    groups = [{"label": "1000", "group": "low", "gain": 1.0}, {"label": "all", "group": "low", "gain": 3.0}]
    (ax,) = _size_figure(("xnli", "bottleneck", "anli"), rows, groups).axes
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["100", "1000", "all"]
    assert [line.get_label() for line in ax.get_lines()][1:] == ["all languages", "low"]
    assert list(ax.get_lines()[1].get_xdata()) == [100, 1000, 2000]  # no recorded full size: twice the largest N
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("anli training examples (log scale)",
                                                  "zero-shot gain over none (points)")


def test_robustness(report):
    assert [(r["column"], r["label"], r["n"], r["clean"], r["perturbed"], r["drop"])
            for r in report.tables["robustness"]] == [
        ("none [bottleneck]", "typo:0.05", 1, 50.0, 40.0, 10.0), ("none [bottleneck]", "words:0.1", 1, 50.0, 45.0, 5.0),
        ("best stack [bottleneck]", "typo:0.05", 1, 54.0, 48.0, 6.0)]
    stack = [(r["language"], r["clean"], r["perturbed"], r["drop"]) for r in report.tables["robustness_by_language"]
             if r["column"] == "best stack [bottleneck]"]
    assert stack == [("en", 85.0, 75.0, 10.0), ("de", 66.0, 60.0, 6.0), ("fr", 64.0, 60.0, 4.0),
                     ("hi", 44.0, 36.0, 8.0), ("sw", 42.0, 36.0, 6.0)]
    assert section(report.markdown, "Robustness")[2:] == [
        "**xnli**", "", "| column | clean | typo:0.05 | drop typo:0.05 | words:0.1 | drop words:0.1 |",
        "| --- | --- | --- | --- | --- | --- |",
        "| none [bottleneck] | 50.0 | 40.0 | +10.0 | 45.0 | +5.0 |",
        "| best stack [bottleneck] | 54.0 | 48.0 | +6.0 | – | – |"]


def test_domain_shift(report):
    assert [(r["column"], r["file"], r["in_domain"], r["english"], r["score"], r["drop"], r["drop_english"])
            for r in report.tables["domain"]] == [("none [bottleneck]", "reviews", 50.0, 80.0, 45.0, 5.0, 35.0),
                                                  ("best stack [bottleneck]", "reviews", 54.0, 85.0, 50.0, 4.0, 35.0)]
    assert section(report.markdown, "Domain shift")[4:] == [
        "| column | in-domain zero-shot | English | reviews | drop reviews | drop vs en reviews |",
        "| --- | --- | --- | --- | --- | --- |", "| none [bottleneck] | 50.0 | 80.0 | 45.0 | +5.0 | +35.0 |",
        "| best stack [bottleneck] | 54.0 | 85.0 | 50.0 | +4.0 | +35.0 |"]


def test_gain_by_language_group(report):
    assert [(r["grouping"], r["group"], r["gain"], r["languages"]) for r in report.tables["gain_by_group"]] == [
        ("tier", "high", 5.0, ["de", "fr"]), ("tier", "low", 3.0, ["hi", "sw"]),
        ("family", "bantu", 2.0, ["sw"]), ("family", "germanic", 6.0, ["de"]), ("family", "indo-aryan", 4.0, ["hi"]),
        ("family", "romance", 4.0, ["fr"]), ("script", "devanagari", 4.0, ["hi"]),
        ("script", "latin", 4.0, ["de", "fr", "sw"])]
    lines = section(report.markdown, "Gain by language group")
    assert lines[2:8] == ["**by tier**", "", "| tier | xnli: anli [bottleneck] |", "| --- | --- |",
                          "| high | +5.0 (2) |", "| low | +3.0 (2) |"]
    assert "| devanagari | +4.0 (1) |" in lines


def test_other_metrics_beside_the_main_one(report):
    (row,) = report.tables["other_metrics"]
    assert (row["target"], row["column"], row["metric"], row["main"], row["name"], row["mean"], row["n"],
            row["english"]) == ("xquad", "none [bottleneck]", "f1", 56.0, "exact_match", 46.0, 2, 70.0)
    assert section(report.markdown, "Other metrics")[2:] == [
        "**xquad**", "", "| column | f1 (main) | exact_match |", "| --- | --- | --- |",
        "| none [bottleneck] | 56.0 | 46.0 ± 1.4 |"]
    headings = [line for line in report.markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## Definitions", "## Headline: zero-shot score", "## Other metrics",
                        "## Stack gain by intermediate task", "## Per-language scores",
                        "## Gain of the best stack by language", "## Gain by language group",
                        "## Sequential vs joint vs single-task", "## Intermediate data size", "## Robustness",
                        "## Domain shift", "## Costs"]


def test_sections_are_absent_without_their_fields(tmp_path):
    plain = [c for c in grid_cells() if not (c.get("chain") or c.get("intermediate_size") or c.get("secondary"))
             and c["composition"] not in ("sequential", "stack-size")]
    plain = [{k: v for k, v in c.items() if k not in ("perturbed", "domain")} for c in plain]
    report = build_report(write(tmp_path, plain), plots=False)
    for key in ("other_metrics", "sequential", "intermediate_size", "intermediate_size_groups",
                "intermediate_size_languages", "robustness",
                "robustness_by_language", "domain"):
        assert report.tables[key] == [], key
    headings = [line for line in report.markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## Definitions", "## Headline: zero-shot score", "## Stack gain by intermediate task",
                        "## Gain of the best stack by language", "## Gain by language group", "## Costs"]


def test_without_the_languages_table_there_are_no_groups(tmp_path, monkeypatch):
    def stub(*args):
        raise NotImplementedError
    monkeypatch.setattr(languages, "group_scores", stub)
    report = build_report(write(tmp_path, grid_cells()), plots=False)
    assert report.tables["gain_by_group"] == [] and report.tables["intermediate_size_groups"] == []
    assert "## Gain by language group" not in report.markdown and "gain high" not in report.markdown
    assert [r["gain"] for r in report.tables["intermediate_size"]] == [0.0, 2.0, 4.0]


# ---- several backbones in one cells.jsonl
def backbone_cells():
    """b/small: xnli none 54 and Stack anli 58 over de fr sw (hi, which b/base did not evaluate: 10, 20), pawsx none;
    b/base: xnli none 64, Stack anli 68, multitask."""
    def on(backbone, cell):
        return {**cell, "id": f"{backbone.split('/')[1]}/{cell['id']}", "backbone": backbone}
    three = lambda de, fr, sw: {"en": 90.0, "de": de, "fr": fr, "sw": sw}  # noqa: E731
    return [on("b/small", target("xnli", "none", scores(60.0, 62.0, 40.0, 10.0))),
            on("b/small", target("xnli", "stack", scores(64.0, 66.0, 44.0, 20.0), inter="anli")),
            on("b/small", target("pawsx", "none", scores(60.0, 60.0, 60.0, 60.0))),
            on("b/base", target("xnli", "none", three(70.0, 71.0, 51.0))),
            on("b/base", target("xnli", "stack", three(74.0, 75.0, 55.0), inter="anli")),
            on("b/base", target("xnli", "multitask", three(70.0, 70.0, 70.0), inter="multitask"))]


def test_two_backbones_side_by_side_and_each_reported(tmp_path):
    report = build_report(write(tmp_path, backbone_cells()))
    assert [(r["target"], r["column"], r["backbone"], r["mean"], r["n"], r["languages"])
            for r in report.tables["backbones"]] == [
        ("xnli", "none [bottleneck]", "b/small", 54.0, 1, ["de", "en", "fr", "sw"]),
        ("xnli", "none [bottleneck]", "b/base", 64.0, 1, ["de", "en", "fr", "sw"]),
        ("xnli", "best stack [bottleneck]", "b/small", 58.0, 1, ["de", "en", "fr", "sw"]),
        ("xnli", "best stack [bottleneck]", "b/base", 68.0, 1, ["de", "en", "fr", "sw"])]
    assert [(d["what"], d["target"], d["column"], d["language"], d["only"]) for d in report.tables["backbones_dropped"]
            ] == [("target", "pawsx", None, None, ["b/small"]), ("language", "xnli", None, "hi", ["b/small"]),
                  ("entry", "xnli", "multitask [bottleneck]", None, ["b/base"])]
    assert section(report.markdown, "Backbones side by side")[2:] == [
        "| target | setup | method | b/small | b/base |", "| --- | --- | --- | --- | --- |",
        "| xnli | none | bottleneck | 54.0 ± 0.0 (n=1) | 64.0 ± 0.0 (n=1) |",
        "| xnli | best stack | bottleneck | anli: 58.0 ± 0.0 (n=1) | anli: 68.0 ± 0.0 (n=1) |", "",
        "Left out (not on every backbone): targets: pawsx (only b/small); headline entries: xnli multitask "
        "[bottleneck] (only b/base); languages: xnli hi (only b/small)."]
    headings = [line for line in report.markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## Definitions", "## Backbones side by side", "## Backbone: b/small", "## Backbone: b/base"]
    small = section(report.markdown, "Backbone: b/small")
    assert [line for line in small if line.startswith("### ")] == [
        "### Headline: zero-shot score", "### Stack gain by intermediate task", "### Per-language scores",
        "### Gain of the best stack by language", "### Gain by language group", "### Costs"]
    assert "| xnli | 43.0 ± 0.0 (n=1) | anli: 48.5 ± 0.0 (n=1) (+5.5) |" in small  # all its languages
    # each backbone's plots in its own folder, linked from its section
    assert sorted(str(p.relative_to(tmp_path)) for p in report.plots) == [
        "backbone_base/heatmap_gain.png", "backbone_base/lang_xnli.png", "backbone_small/heatmap_gain.png",
        "backbone_small/lang_pawsx.png", "backbone_small/lang_xnli.png"]
    for plot in report.plots:
        assert plot.read_bytes()[:8] == PNG and f"]({plot.parent.name}/{plot.name})" in report.markdown
    assert {(r["backbone"], r["column"]) for r in report.tables["headline"] if r["target"] == "xnli"} == {
        ("b/small", "none [bottleneck]"), ("b/small", "best stack [bottleneck]"), ("b/base", "none [bottleneck]"),
        ("b/base", "best stack [bottleneck]"), ("b/base", "multitask [bottleneck]")}
    assert [row[0] for row in terminal_rows(report)[1:]] == ["pawsx (b/small)", "xnli (b/small)", "xnli (b/base)"]
    assert "6 cells: 6 ok, 0 failed." in report.markdown


def test_one_backbone_named_in_every_record_is_the_ordinary_report(tmp_path):
    cells = [{**c, "backbone": "b/small"} for c in grid_cells()]
    named = build_report(write(tmp_path / "named", cells), plots=False)
    plain = build_report(write(tmp_path / "plain", grid_cells()), plots=False)
    assert named.markdown.replace("named", "plain") == plain.markdown and "backbones" not in named.tables


def test_each_backbone_ranks_on_its_own_stack_cells(tmp_path):
    """b/small: Stack anli +5, squad +2; b/base: anli -2, squad +4; logme ranks anli > squad > none on both:
    Spearman 1.0 and regret 0 on b/small, -0.5 and 4 - (-2) = 6 on b/base (mixing the backbones would give
    neither)."""
    from stepstone.ranking import Estimator, Ranking, Row, Score

    def rank(backbone):
        rows = tuple(Row(c, None if c == "none" else c, "bottleneck", {Estimator("logme"): Score(v)})
                     for c, v in (("none", 0.0), ("anli", 0.9), ("squad", 0.5)))
        ranking = Ranking("xnli", backbone, 100, (Estimator("logme"),), rows)
        return {"id": f"{backbone}/rank/xnli/bottleneck", "kind": "rank", "status": "ok", "error": None,
                "target": "xnli", "method": "bottleneck", "backbone": backbone, "ranking": ranking.to_dict()}

    def zs(z):
        return {"en": z + 20.0, "de": z, "fr": z}
    cells = []
    for backbone, anli, squad in (("b/small", 65.0, 62.0), ("b/base", 58.0, 64.0)):
        cells += [{**c, "id": f"{backbone}/{c['id']}", "backbone": backbone} for c in (
            target("xnli", "none", zs(60.0)), target("xnli", "stack", zs(anli), inter="anli"),
            target("xnli", "stack", zs(squad), inter="squad"))]
        cells.append(rank(backbone))
    report = build_report(write(tmp_path, cells), plots=False)
    assert [(r["backbone"], r["spearman"], r["regret_at_1"], r["picked"], r["best"])
            for r in report.tables["rank_agreement"]] == [("b/small", 1.0, 0.0, "anli", "anli"),
                                                          ("b/base", -0.5, 6.0, "anli", "squad")]
    # rank_tables over the whole file (benchmarks/rank_agreement.py) measures each rank cell on its own backbone too
    from stepstone.experiments import load_cells
    from stepstone.experiments.rank_report import rank_tables

    assert [(r["spearman"], r["regret_at_1"]) for r in rank_tables(load_cells(tmp_path))["rank_agreement"]] == [
        (-0.5, 6.0), (1.0, 0.0)]  # sorted by backbone name
