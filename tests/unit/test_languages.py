"""The packaged languages table (stepstone/languages.tsv) and grouping by it, hand-computed."""
from __future__ import annotations

import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from stepstone.errors import StepstoneError
from stepstone.languages import (GROUPINGS, TABLE, UNKNOWN, Language, group_of, group_scores, groups, language,
                                 parse_table, table)
from stepstone.tasks import TASKS, get_task

ROOT = Path(__file__).resolve().parents[2]


def test_every_evaluation_language_of_every_task_has_a_row():
    wanted = {lang for name, _ in TASKS.items() for lang in get_task(name).official_languages}
    assert wanted - set(table()) == set()
    # and the languages a source has beyond the benchmark's list (XQuAD ro), but not MLQA's pairs (ar.de, ...)
    extra = {lang for name, _ in TASKS.items() for lang in get_task(name).languages if "." not in lang} - wanted
    assert extra == {"ro"} and set(table()) == wanted | extra  # no row for a language no task evaluates


def test_rows_are_unique_and_the_file_has_one_line_per_row():
    lines = [line for line in files("stepstone").joinpath(TABLE).read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    codes = [line.split("\t")[0] for line in lines]
    assert len(codes) == len(set(codes)) == len(table()) == 45
    assert codes == sorted(codes)


def test_known_rows_hold_the_sources_values():
    # CC-100: Conneau et al. 2020 Table 6 (en 300.8, sw 1.6, hi 20.2 GiB); Joshi et al. 2020 lang2tax classes
    assert language("en") == Language("en", "English", "Indo-European", "Latin", 300.8, 5)
    assert language("sw") == Language("sw", "Swahili", "Niger-Congo", "Latin", 1.6, 2)
    assert language("hi") == Language("hi", "Hindi", "Indo-European", "Devanagari", 20.2, 4)
    assert language("zh") == Language("zh", "Chinese", "Sino-Tibetan", "Han", 46.9, 5)
    assert language("eu").family == "language isolate" and language("eu").joshi_class == 4
    # not among XLM-R's 100 languages: no CC-100 size, a Joshi class all the same
    assert [(language(c).cc100_gib, language(c).joshi_class) for c in ("yo", "ht", "qu")] == [(None, 2), (None, 2),
                                                                                           (None, 1)]
    assert language("xa").joshi_class is None and language("xa").family == "synthetic"
    assert language("nope") is None


def test_tier_rule_is_the_joshi_class():
    tiers = {k: Language("x", "X", "f", "s", None, k).tier for k in (0, 1, 2, 3, 4, 5, None)}
    assert tiers == {0: "low", 1: "low", 2: "low", 3: "medium", 4: "high", 5: "high", None: UNKNOWN}
    counts: dict[str, int] = {}
    for row in table().values():
        counts[row.tier] = counts.get(row.tier, 0) + 1
    assert counts == {"high": 19, "medium": 15, "low": 9, UNKNOWN: 2}  # unknown: the toy languages xa, xb


SCORES = {"en": 80.0, "de": 70.0, "sw": 50.0, "yo": 40.0, "hi": 60.0, "zh": 65.0, "th": 55.0}


def test_group_scores_by_hand():
    assert group_scores(SCORES, "tier") == {"high": (80 + 70 + 60 + 65) / 4, "medium": 55.0, "low": (50 + 40) / 2}
    assert group_scores(SCORES, "family") == {"Indo-European": 70.0, "Niger-Congo": 45.0, "Sino-Tibetan": 65.0,
                                              "Tai-Kadai": 55.0}
    assert list(group_scores(SCORES, "script").items()) == [("Devanagari", 60.0), ("Han", 65.0),
                                                             ("Latin", (80 + 70 + 50 + 40) / 4), ("Thai", 55.0)]
    # a code the table lacks groups as unknown, listed last
    assert list(group_scores({"qq": 10.0, "sw": 30.0, "en": 20.0}, "tier").items()) == [
        ("high", 20.0), ("low", 30.0), (UNKNOWN, 10.0)]
    assert groups(["sw", "en", "yo", "de.en"], "tier") == {"high": ["en"], "low": ["sw", "yo"], UNKNOWN: ["de.en"]}


def test_group_of_and_an_unknown_grouping():
    assert [group_of("sw", by) for by in GROUPINGS] == ["low", "Niger-Congo", "Latin"]
    assert group_of("ar.de", "family") == UNKNOWN
    with pytest.raises(StepstoneError) as err:
        group_of("en", "region")
    assert str(err.value) == "unknown language grouping 'region' (valid: tier, family, script)"
    with pytest.raises(StepstoneError, match="unknown language grouping 'Tier'"):
        group_scores({"en": 1.0}, "Tier")


@pytest.mark.parametrize("row,message", [
    ("en\tEnglish\tIndo-European\tLatin\t300.8", "t.tsv:2: 5 columns, expected 6 (code, name, family, script, "
                                                 "cc100_gib, joshi_class)"),
    ("en\tEnglish\tIndo-European\tLatin\t300.8\t6", "t.tsv:2: language 'en': joshi_class must be 0-5, got 6"),
    ("en\tEnglish\tIndo-European\tLatin\tbig\t5", "t.tsv:2: could not convert string to float: 'big'"),
    ("en\tEnglish\t\tLatin\t300.8\t5", "t.tsv:2: language 'en': empty family"),
    ("af\tAfrikaans\tIndo-European\tLatin\t1.3\t3", "t.tsv:2: language 'af' is listed twice"),
])
def test_malformed_table_names_file_and_line(row, message):
    with pytest.raises(StepstoneError) as err:
        parse_table(f"# header\n{row}\n", "t.tsv") if "twice" not in message else parse_table(
            f"af\tAfrikaans\tIndo-European\tLatin\t1.3\t3\n{row}\n", "t.tsv")
    assert str(err.value) == message


def test_table_ships_with_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    # hatchling puts every file under src/stepstone that git does not ignore into the wheel
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "src/stepstone" in packages["packages"] and "exclude" not in packages
    ignored = subprocess.run(["git", "check-ignore", "-q", "src/stepstone/languages.tsv"], cwd=ROOT)
    assert ignored.returncode == 1  # 1: not ignored
    assert files("stepstone").joinpath(TABLE).is_file()
