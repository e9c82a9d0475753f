"""The report's confidence intervals (experiments/ci_report.py) on cells whose per-example statistics give known
answers: every gain is exact, and its interval is what the flips between the two setups allow."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stepstone.experiments import build_report, stats

N = 100  # evaluation examples per language


def flags(right: int, n: int = N) -> np.ndarray:
    """Accuracy statistics: the first `right` examples correct."""
    correct = np.array([1.0] * right + [0.0] * (n - right))
    return np.stack([correct, np.ones(n)], axis=1)


def cell(target, comp, right, seed=0, inter=None, method="bottleneck", perturbed=None, **extra):
    """A target cell whose every zero-shot language (de, fr) gets the first `right` of N examples right; en all.
    `perturbed`: label -> right under that perturbation (de only; fr is not changed by it)."""
    name = f"{comp}-{inter}" if inter and comp in ("stack", "stack-size") else comp
    record = {"id": f"target/{target}/{method}/{name}/seed{seed}", "kind": "target", "status": "ok",
              "target": target, "method": method, "composition": comp, "intermediate": inter, "seed": seed,
              "metric": "accuracy", "train_language": "en", "dev": 70.0,
              "scores": {"en": 100.0, "de": float(right), "fr": float(right)},
              "statistics": {"statistic": "ratio", "scores": {"en": stats.encode(flags(N)),
                                                              "de": stats.encode(flags(right)),
                                                              "fr": stats.encode(flags(right))}},
              "learning": {"verdict": "learned", "metric": "accuracy", "majority": 34.0, "chance": 33.3}}
    if perturbed:
        record["perturbed"] = {label: {"en": 100.0, "de": float(r), "fr": float(right)} for label, r in perturbed.items()}
        record["statistics"]["perturbed"] = {label: {"en": stats.encode(flags(N)), "de": stats.encode(flags(r)),
                                                     "fr": stats.encode(flags(right))}
                                             for label, r in perturbed.items()}
    return {**record, **extra}


def report_of(tmp_path, cells):
    folder = tmp_path / "grid"
    folder.mkdir()
    (folder / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cells))
    return build_report(folder, plots=False)


def grid():
    return [
        *(cell("xnli", "none", 50, seed=s, perturbed={"typo:0.1": 40}) for s in range(3)),
        *(cell("xnli", "stack", 60, seed=s, inter="anli", perturbed={"typo:0.1": 60}, dev=75.0) for s in range(3)),
        cell("xnli", "stack", 50, inter="sst2", perturbed={"typo:0.1": 40}),
        *(cell("xnli", "fuse", 50, seed=s) for s in range(3)),
        cell("xnli", "stack-size", 55, inter="anli", intermediate_size=300),
        {"id": "intermediate/bottleneck/anli", "kind": "intermediate", "status": "ok", "task": "anli",
         "method": "bottleneck", "composition": "intermediate", "train_examples": 2900},  # as a run records it
        {"id": "intermediate/bottleneck/anli-n300", "kind": "intermediate", "status": "ok", "task": "anli",
         "method": "bottleneck", "composition": "intermediate", "intermediate_size": 300},
        *(cell("xnli", "full", 70, seed=s, method="full") for s in range(3)),
    ]


def test_gains_are_exact_and_their_intervals_follow_the_flips(tmp_path):
    tables = report_of(tmp_path, grid()).tables
    rows = {(r["column"]): r for r in tables["headline_ci"]}
    stack = rows["best stack [bottleneck]"]
    assert stack["intermediate"] == "anli" and stack["n"] == 3
    assert stack["gain"]["gain"] == pytest.approx(10.0) and stack["gain"]["significant"]
    # 10 of 100 examples flip to right in both languages: the resampled gain is 100 * flips drawn / 100, never 0
    assert 0 < stack["gain"]["low"] < 10.0 < stack["gain"]["high"] < 20.0
    assert stack["score"]["gain"] == pytest.approx(60.0) and stack["score"]["low"] < 60.0 < stack["score"]["high"]
    fuse = rows["fuse [bottleneck]"]
    assert (fuse["gain"]["gain"], fuse["gain"]["low"], fuse["gain"]["high"], fuse["gain"]["significant"]) == (
        0.0, 0.0, 0.0, False)  # the same examples right: no resample can tell them apart
    full = rows["full"]
    assert full["baseline"] == "none [bottleneck]" and full["gain"]["gain"] == pytest.approx(20.0)
    assert rows["none [bottleneck]"]["gain"] is None


def test_the_headline_also_resamples_the_seeds(tmp_path):
    # none's seeds get 40, 50 and 60 of 100 right, the stack's all 60: +10 for these runs, but drawing none's seed
    # of 60 three times (1 in 27) gives exactly 0, so across training runs the gain is not significant
    cells = [*(cell("xnli", "none", r, seed=s) for s, r in enumerate((40, 50, 60))),
             *(cell("xnli", "stack", 60, seed=s, inter="anli") for s in range(3)),
             cell("xnli", "fuse", 60)]
    report = report_of(tmp_path, cells)
    rows = {r["column"]: r for r in report.tables["headline_ci"]}
    stack = rows["best stack [bottleneck]"]
    assert stack["gain"]["gain"] == pytest.approx(10.0) and stack["gain"]["significant"]
    seeded = stack["gain_seeds"]
    assert seeded["gain"] == pytest.approx(10.0) and seeded["low"] == 0.0 and not seeded["significant"]
    assert seeded["high"] > stack["gain"]["high"]
    assert rows["fuse [bottleneck]"]["gain_seeds"] is None  # one seed: nothing to resample
    line = next(line for line in report.markdown.splitlines() if line.startswith("| best stack [bottleneck] |"))
    assert line.endswith(f"| +10.0 [+0.0, {seeded['high']:+.1f}] | none [bottleneck] |")
    assert "| seeds resampled too |" in report.markdown


def test_every_intermediate_task_and_language_gets_its_interval(tmp_path):
    tables = report_of(tmp_path, grid()).tables
    overall = {r["intermediate"]: r for r in tables["stack_ci"]}
    assert overall["anli"]["gain"]["gain"] == pytest.approx(10.0) and overall["anli"]["n"] == 3
    assert overall["sst2"]["gain"]["gain"] == 0.0 and not overall["sst2"]["gain"]["significant"]
    assert overall["sst2"]["n"] == 1 and overall["sst2"]["n_none"] == 3
    languages = {(r["intermediate"], r["language"]): r["gain"] for r in tables["stack_ci_by_language"]}
    assert sorted(languages) == [("anli", "de"), ("anli", "fr"), ("sst2", "de"), ("sst2", "fr")]
    assert languages["anli", "de"]["gain"] == pytest.approx(10.0) and languages["anli", "de"]["significant"]


def test_sizes_and_robustness_intervals(tmp_path):
    tables = report_of(tmp_path, grid()).tables
    sizes = {(r["size"], r["group"]): r for r in tables["size_ci"]}
    assert sizes["300", "all languages"]["gain"]["gain"] == pytest.approx(5.0)
    assert sizes["all", "all languages"]["examples"] == 2900
    assert sizes["300", "CC-100 >= 50 GiB"]["languages"] == ["de", "fr"]  # German 66.6, French 56.8 GiB
    (robust,) = tables["robustness_ci"]
    assert robust["languages"] == ["de"]  # fr is not changed by the perturbation
    assert robust["drop_none"]["gain"] == pytest.approx(10.0) and robust["drop_stack"]["gain"] == pytest.approx(0.0)
    assert robust["smaller_drop"]["gain"] == pytest.approx(10.0) and robust["smaller_drop"]["significant"]


def test_the_sections_print_intervals_and_the_learning_check(tmp_path):
    md = report_of(tmp_path, grid()).markdown
    assert "## Does each target learn?" in md
    assert "| xnli | bottleneck | accuracy | 70.0 | 34.0 | 33.3 | 3/3 |" in md
    assert "## Headline with 95% confidence intervals" in md
    line = next(line for line in md.splitlines() if line.startswith("| best stack [bottleneck] | anli | 3 |"))
    assert "| +10.0 [" in line and "]* | none [bottleneck] |" in line
    assert "## Which intermediate tasks help (95% CIs)" in md and "## Robustness with and without" in md


def test_cells_without_statistics_get_no_intervals(tmp_path):
    plain = [{k: v for k, v in c.items() if k != "statistics"} for c in grid()]
    report = report_of(tmp_path, plain)
    assert report.tables["headline_ci"] == [] and report.tables["stack_ci"] == []
    assert "95% confidence intervals" not in report.markdown


def test_malformed_statistics_name_the_cell(tmp_path):
    from stepstone.errors import StepstoneError

    broken = grid()
    broken[0]["statistics"]["scores"]["de"] = "u1:100x2:???"
    with pytest.raises(StepstoneError, match=r"cell target/xnli/bottleneck/none/seed0, statistics of 'de': not "
                                             r"per-example statistics"):
        report_of(tmp_path, broken)


def test_a_grid_folders_notes_open_its_report(tmp_path):
    folder = tmp_path / "grid"
    folder.mkdir()
    (folder / "cells.jsonl").write_text("".join(json.dumps(c) + "\n" for c in grid()))
    (folder / "notes.md").write_text("## Design\n\nWhy 1,000 examples.\n")
    md = build_report(folder, plots=False).markdown
    assert md.startswith("# Transfer report: grid\n\n## Design\n\nWhy 1,000 examples.\n\n") and "## Definitions" in md
    (folder / "notes.md").write_bytes(b"\xff\xfe bad")
    from stepstone.errors import StepstoneError

    with pytest.raises(StepstoneError, match=r"notes.md: cannot read the grid's notes"):
        build_report(folder, plots=False)


def test_a_second_backbone_gets_its_difference_from_the_first_with_an_interval(tmp_path):
    def on(backbone, cells, lower=0):
        out = []
        for c in cells:
            if c["kind"] == "target":
                right = int(c["scores"]["de"]) - lower
                c = {**cell(c["target"], c["composition"], right, seed=c["seed"], inter=c["intermediate"],
                            method=c["method"]), "dev": c["dev"]}
            out.append({**c, "id": f"{backbone}/{c['id']}", "backbone": backbone})
        return out

    base = [c for c in grid() if c["composition"] in ("none", "fuse")]
    report = report_of(tmp_path, on("big", base) + on("tiny", base, lower=20))
    rows = {(r["column"], r["backbone"]): r for r in report.tables["backbones"]}
    assert rows["none [bottleneck]", "big"]["versus_first"] is None
    tiny = rows["none [bottleneck]", "tiny"]["versus_first"]
    assert tiny["gain"] == pytest.approx(-20.0) and tiny["significant"] and tiny["high"] < 0
    assert "| none | bottleneck | 50.0 ± 0.0 (n=3) | 30.0 ± 0.0 (n=3); -20.0 [" in report.markdown
    assert any(r["backbone"] == "tiny" for r in report.tables["headline_ci"])  # every section per backbone


def test_robustness_pairs_the_seeds_evaluated_under_the_perturbation(tmp_path):
    """A grid's perturb_seeds: only the first seed's cells were perturbed; the drop uses those, clean and perturbed."""
    def first_seed_only(c):
        if c.get("seed", 0) == 0 or "perturbed" not in c:
            return c
        statistics = {k: v for k, v in c["statistics"].items() if k != "perturbed"}
        return {**{k: v for k, v in c.items() if k != "perturbed"}, "statistics": statistics}

    cells = [first_seed_only(c) for c in grid()]
    (robust,) = report_of(tmp_path, cells).tables["robustness_ci"]
    assert robust["seeds"] == (1, 1) and robust["smaller_drop"]["gain"] == pytest.approx(10.0)


def test_languages_without_a_pretraining_size_have_no_group():
    from stepstone.experiments.ci_report import pretraining_group

    assert (pretraining_group("de"), pretraining_group("hi")) == ("CC-100 >= 50 GiB", "CC-100 < 50 GiB")
    assert pretraining_group("xa") is None and pretraining_group("qq") is None
