"""The benchmark scripts still run end to end (issue 5: "the benchmark runs with one command"), on the tiny
backbone and a few examples. Timings are not checked (they are the scripts' output, never a test's); what is
checked is that every setup ran the same training and the report holds what the README's tables are built from."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.real
def test_speed_benchmark_runs_every_setup_on_the_same_training(tmp_path, shared_data):
    out = tmp_path / "speed.json"
    done = run("speed.py", "--backbone", "tiny", "--data-dir", str(shared_data), "--train-examples", "32",
               "--eval-examples", "8", "--epochs", "1", "--seeds", "0", "--threads", "1", "--out", str(out),
               "--stepstone-args", "train.precision=bf16", "train.group_by_length=true")
    report = json.loads(out.read_text())
    assert [(r["setup"], r["seed"]) for r in report["runs"]] == \
        [("adapters-maxlen", 0), ("adapters-dynamic", 0), ("stepstone", 0)]
    assert {r["steps"] for r in report["runs"]} == {2}  # 32 sentences / batch 16, one epoch, in every setup
    langs = {lang for r in report["runs"] for lang in r["f1"]}
    assert "en" in langs and all(set(r["f1"]) == langs for r in report["runs"])  # the same languages scored
    assert all(0 <= f1 <= 100 for r in report["runs"] for f1 in r["f1"].values())
    assert set(report["speedups"]) == {"stepstone/adapters-maxlen", "stepstone/adapters-dynamic",
                                       "adapters-dynamic/adapters-maxlen"}
    assert report["failure"] is None and report["stepstone_args"] == ["train.precision=bf16",
                                                                       "train.group_by_length=true"]
    assert report["real_tokens"] > 0 and "speedup stepstone/adapters-dynamic" in done.stdout
    assert report["runs"][2]["recorded"]["train"]["group_by_length"] is True  # --stepstone-args reached setup 3


@pytest.mark.real
def test_levers_benchmark_times_every_lever(tmp_path, shared_data):
    out = tmp_path / "levers.json"
    run("levers.py", "--backbone", "tiny", "--data-dir", str(shared_data), "--batches", "4", "--warmup", "1",
        "--repeats", "2", "--no-compile", "--leave-out", "1", "--out", str(out))
    levers = json.loads(out.read_text())["levers"]
    assert set(levers) == {"fp32", "grouped", "bf16", "bf16-lowered", "no-dropout", "eager", "eager-dropout",
                           "adapterdrop", "cached"}
    assert levers["cached"]["leave_out"] == levers["adapterdrop"]["leave_out"] == 1
    assert levers["cached"]["first_pass_ms_per_step"] > 0
    assert levers["fp32"]["padding_share"] > levers["grouped"]["padding_share"]  # grouping removes padding
    assert all(row["ms_per_step"] > 0 for row in levers.values())


def test_memory_benchmark_reports_each_configuration(tmp_path):
    out = tmp_path / "memory.json"
    run("memory.py", "--backbone", "tiny", "--batch", "2", "--length", "16", "--steps", "1",
        "--configs", "none,fp32,bottleneck;none,bf16,lora", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["quantize"], r["precision"], r["method"]) for r in rows] == \
        [("none", "fp32", "bottleneck"), ("none", "bf16", "lora")]
    assert all("error" not in r and r["trainable_parameters"] > 0 and r["tokens_per_second"] > 0 for r in rows)


@pytest.mark.real
def test_calibration_sweep_records_every_run(tmp_path, shared_data):
    out = tmp_path / "calibration.json"
    done = run("calibrate.py", "--backbone", "tiny", "--data-dir", str(shared_data), "--examples", "32",
               "--eval-examples", "16", "--families", "sentence classification,tagging", "--out", str(out))
    report = json.loads(out.read_text())
    assert [(r["family"], r["task"], r["lr"]) for r in report["runs"]] == [
        ("sentence classification", "sst2", 1e-3), ("sentence classification", "sst2", 5e-3),
        ("tagging", "udpos", 1e-3), ("tagging", "udpos", 5e-3)]
    assert {r["steps"] for r in report["runs"]} == {4, 2}  # sst2: 32 x 2 epochs / 16; udpos: 1 epoch
    assert all(r["verdict"] in ("learned", "not-learned", "unknown") and r["dev_examples"] == 16
               for r in report["runs"])
    assert report["runs"][0]["chance"] == 50.0 and f"wrote {out}" in done.stdout


@pytest.mark.real
def test_the_medium_calibration_records_each_runs_dev_curve(tmp_path, shared_data):
    out = tmp_path / "calibration.json"
    run("calibrate.py", "--plan", "medium", "--backbone", "tiny", "--data-dir", str(shared_data), "--examples", "32",
        "--eval-examples", "16", "--epochs", "2", "--families", "tagging/panx", "--lrs", "5e-3", "--method", "lora",
        "--out", str(out))
    report = json.loads(out.read_text())
    (row,) = report["runs"]
    assert (report["plan"], row["family"], row["task"], row["method"], row["lr"]) == (
        "medium", "tagging/panx", "panx", "lora", 5e-3)
    assert [point["epoch"] for point in row["curve"]] == [1, 2] and all("dev" in p for p in row["curve"])


def test_an_unknown_calibration_family_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "calibrate.py"), "--plan", "medium",
                           "--families", "tagging/nope", "--out", str(tmp_path / "c.json")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0 and done.stderr.strip().splitlines()[-1].startswith(
        "error: unknown family tagging/nope (valid: tagging/udpos, tagging/panx,")


def test_the_lexicon_reads_dictd_entries_as_one_word_translations(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import lexicon
    finally:
        sys.path.pop(0)
    entries = ["00databaseinfo\nabout this dictionary\n", "Haus /haʊ̯s/ <n, neut>\nhouse <n>, home <n>\n"
               "      \"nach Hause\"  - home\n   Synonym: {Heim}\n", "gehen /ɡˈeːən/ <v>\n1. go <v>\n2. walk\n",
               "nach Hause\nhome\n", "Fahrrad\nbicycle, push bike\n"]
    data, index = b"", []
    for entry in entries:
        raw = entry.encode("utf-8")
        index.append((entry.split("\n")[0].split(" /")[0], len(data), len(raw)))
        data += raw

    def b64(n: int) -> str:
        digits = ""
        while True:
            digits = lexicon._B64[n % 64] + digits
            n //= 64
            if not n:
                return digits

    assert lexicon.dictd_number(b64(123456)) == 123456
    path = tmp_path / "x.index"
    path.write_text("".join(f"{word}\t{b64(offset)}\t{b64(length)}\n" for word, offset, length in index))
    assert list(lexicon.entries(path, data)) == [("Haus", ["house", "home"]), ("gehen", ["go", "walk"]),
                                                 ("Fahrrad", ["bicycle"])]
