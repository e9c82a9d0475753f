"""Cells per hour of a grid on 1 and on N local workers (issue 17), each worker with one torch thread.

    python benchmarks/workers.py                                     # benchmarks/grids/workers-cpu-small.yaml
    python benchmarks/workers.py --backbone tiny --spec SPEC.yaml --workers 1,2

Runs `stepstone grid SPEC --workers N` once per N, each in a fresh grid folder and a fresh tokenised-data cache
(so no run reuses another's work), one after another, with STEPSTONE_THREADS=1. Reports per N the wall time,
the cells run and cells per hour, and whether every run recorded the same cells with the same results (timing
fields aside); writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import cpu_model  # benchmarks/memory.py, beside this script

DEFAULT_BACKBONE = Path("~/.cache/stepstone/multilingual-e5-small").expanduser()
TIMING = ("cell_seconds", "train_seconds", "peak_rss_mb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("benchmarks/grids/workers-cpu-small.yaml"))
    parser.add_argument("--backbone", default=str(DEFAULT_BACKBONE) if DEFAULT_BACKBONE.is_dir() else "tiny")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("STEPSTONE_SHARED", "../shared")) / "data")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts, run in this order")
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE changes to the grid")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/workers.json"))
    args = parser.parse_args()

    from stepstone.artifacts import write_text_atomic

    runs, records = {}, {}
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory(prefix="stepstone-workers-") as scratch:
            folder = Path(scratch) / "grid"
            env = {**os.environ, "STEPSTONE_THREADS": "1", "STEPSTONE_CACHE": str(Path(scratch) / "cache"),
                   "HF_HUB_OFFLINE": "1"}
            command = [sys.executable, "-m", "stepstone_cli.main", "grid", str(args.spec), "--out", str(folder),
                       "--workers", str(workers), "-q", f"backbone.name={args.backbone}",
                       f"data_dir={args.data_dir}", *args.set]
            start = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"workers={workers}: the grid failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            lines = [json.loads(line) for line in (folder / "cells.jsonl").read_text().splitlines()]
        failed = sorted(r["id"] for r in lines if r["status"] != "ok")
        records[workers] = {r["id"]: {k: v for k, v in r.items() if k not in TIMING} for r in lines}
        runs[str(workers)] = {"wall_seconds": round(seconds, 1), "cells": len(lines), "failed": failed,
                              "cells_per_hour": round(len(lines) / seconds * 3600, 1),
                              "cell_seconds_sum": round(sum(r["cell_seconds"] for r in lines), 1)}
        print(f"workers={workers}: {len(lines)} cells in {seconds:.0f} s = {runs[str(workers)]['cells_per_hour']:.1f} "
              f"cells/hour ({len(failed)} failed)", flush=True)
    first = next(iter(runs))
    for row in runs.values():
        row["speedup"] = round(row["cells_per_hour"] / runs[first]["cells_per_hour"], 3)
    same = all(r == records[int(first)] for r in records.values())
    report = {"spec": str(args.spec), "backbone": args.backbone, "threads_per_worker": 1, "cpus": os.cpu_count(),
              "machine": platform.machine(), "cpu": cpu_model(), "runs": runs, "same_records": same}
    write_text_atomic(args.out, json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"same records in every run: {same}; wrote {args.out}")


if __name__ == "__main__":
    main()
