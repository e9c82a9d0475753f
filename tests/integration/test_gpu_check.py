"""benchmarks/gpu/check.py's CPU dry run (issue 17): the GPU checks are prepared and must not rot before a GPU
session runs them. Checked: the report's keys, every measurement named, and each one either a full set of numbers
or a recorded skip / error (never a half row); 4/8-bit are skipped for want of CUDA; the budget stops new ones."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
sys.path.insert(0, str(REPO / "benchmarks"))
from check import NAMES  # noqa: E402

REPORT_KEYS = {"backbone", "batch", "budget_seconds", "dry_run", "elapsed_seconds", "flop_formula", "gpu", "length",
               "machine", "measurements", "peak", "python", "shape", "steps", "versions"}
TRAIN_NUMBERS = {"trainable_parameters", "backbone_parameters", "first_step_seconds", "seconds_per_step",
                 "tokens_per_second", "flops_per_step", "achieved_tflops", "first_loss", "last_loss", "peak_rss_mb"}


def dry_run(tmp_path: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "check.py"), "--cpu", "--out",
                           str(tmp_path), "--steps", "1", "--batch", "2", "--length", "8", *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "gpu-check.json").read_text())


def test_dry_run_records_every_measurement_as_numbers_or_a_reason(tmp_path):
    report = dry_run(tmp_path)
    assert set(report) == REPORT_KEYS and report["dry_run"] is True and report["gpu"] is None
    assert report["peak"]["tflops"] == 989.0 and "2*N*T" in report["flop_formula"]
    rows = report["measurements"]
    assert sorted(rows) == sorted(NAMES)  # the report is written with sorted keys
    for name, row in rows.items():
        if "4bit" in name or "8bit" in name:
            assert row == {"skip": "skipped: needs CUDA"}, name
        elif name == "cli-train-evaluate-tiny":
            assert row["evaluation_matches_training"] is True and row["device"] == "cpu"
            assert row["train_seconds"] > 0 and row["evaluate_seconds"] > 0
        else:
            assert "error" not in row, (name, row)
            assert all(isinstance(row[k], (int, float)) and row[k] > 0 for k in TRAIN_NUMBERS), (name, row)
            assert row["peak_gpu_memory_mb"] is None and row["mfu"] is None  # no GPU: no GPU numbers invented
            assert row["steps"] == 1
    # frozen backbones train a sliver; full fine-tuning trains all of it (plus the head)
    assert rows["lora-fp32"]["trainable_parameters"] < rows["full-fp32"]["trainable_parameters"]
    assert rows["full-fp32"]["trainable_parameters"] > rows["full-fp32"]["backbone_parameters"]
    # the frozen-backbone FLOPs are 2F + 2 N_train T, full fine-tuning's 3F, of the same forward
    assert rows["bottleneck-fp32"]["flops_per_step"] < rows["full-fp32"]["flops_per_step"]


def test_spent_budget_starts_nothing(tmp_path):
    report = dry_run(tmp_path, "--budget-seconds", "0", "--only", "bottleneck-fp32,cli-train-evaluate-tiny")
    assert sorted(report["measurements"]) == ["bottleneck-fp32", "cli-train-evaluate-tiny"]
    assert all(row["skip"].startswith("skipped: budget spent") for row in report["measurements"].values())
