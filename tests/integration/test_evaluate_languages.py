"""`evaluate` over languages with local files: one without a file is skipped and recorded, one beyond the
benchmark's list is scored and flagged, none with data is an error that writes nothing (tiny backbone, Tatoeba:
no training needed)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stepstone import pipelines
from stepstone.errors import StepstoneError
from stepstone_cli.main import app

SENTENCES = ["the cat sleeps", "a dog runs", "birds sing", "it rains"]
LOOKED_ES = ("no test file for language 'es' under {data} (looked for: target/tatoeba/tatoeba.spa-eng.spa, "
             "target/tatoeba/es-en.es, target/tatoeba/es-en.en, labels/tatoeba/test-es.tsv)")


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """Tatoeba files for de and (outside XTREME's 36) az, none for es."""
    root = tmp_path / "data"
    folder = root / "target" / "tatoeba"
    folder.mkdir(parents=True)
    for code in ("deu", "aze"):
        (folder / f"tatoeba.{code}-eng.{code}").write_text("\n".join(SENTENCES) + "\n")
        (folder / f"tatoeba.{code}-eng.eng").write_text("\n".join(SENTENCES) + "\n")
    monkeypatch.chdir(tmp_path)
    return root


def test_a_missing_language_is_skipped_and_recorded(data):
    result = pipelines.evaluate(None, backbone="tiny", task="tatoeba", langs=["de", "es"], data_dir=data)
    assert result.scores == {"de": {"accuracy": 100.0, "layer": 1}}
    assert result.skipped == {"es": LOOKED_ES.format(data=data)} and result.outside_benchmark == ()
    report = json.loads(result.output.read_text())
    assert set(report) == {"artifact", "task", "split", "metric", "scores", "examples", "retrieval", "skipped",
                           "sources", "zero_shot"}
    assert report["skipped"] == {"es": LOOKED_ES.format(data=data)} and report["examples"] == {"de": 4}


def test_a_language_beyond_the_benchmark_with_a_local_file_is_scored_and_flagged(data):
    result = pipelines.evaluate(None, backbone="tiny", task="tatoeba", langs=["az", "de"], data_dir=data)
    assert sorted(result.scores) == ["az", "de"] and result.outside_benchmark == ("az",)
    report = json.loads(result.output.read_text())
    assert report["outside_benchmark"] == ["az"] and "skipped" not in report


def test_default_languages_are_the_benchmarks_and_the_missing_ones_are_skipped(data):
    result = pipelines.evaluate(None, backbone="tiny", task="tatoeba", data_dir=data)
    assert list(result.scores) == ["de"]  # az is not in XTREME's list: only asked for explicitly
    assert len(result.skipped) == 35 and "de" not in result.skipped and "az" not in result.skipped


def test_no_language_with_data_is_an_error_and_writes_nothing(data, tmp_path):
    with pytest.raises(StepstoneError) as err:
        pipelines.evaluate(None, backbone="tiny", task="tatoeba", langs=["es", "fr"], data_dir=data)
    assert str(err.value) == ("no test data for task 'tatoeba' in any language asked for: "
                              f"{LOOKED_ES.format(data=data)} (and likewise for 1 more: fr)")
    assert not (tmp_path / "evaluations").exists()


def test_cli_prints_what_it_skipped_and_what_is_outside_the_list(data):
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        app, ["evaluate", "--backbone", "tiny", "--task", "tatoeba", "--langs", "de,es,az", "--data-dir", "data", "-q"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"skipped es: {LOOKED_ES.format(data='data')}" in lines
    assert "outside the benchmark's language list for tatoeba (read from local files): az" in lines
    assert lines[-1] == "wrote evaluations/tiny/tatoeba.test.json"
