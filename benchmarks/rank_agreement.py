"""How well did `stepstone rank` predict, and what did it cost? Read from a grid that ran rank cells (issue 15).

    python benchmarks/rank_agreement.py grids/rank-cpu-small --out benchmarks/results/rank-e5-small.json

Per target and method of the grid's rank cells: each estimator's Spearman, NDCG@3 and regret@1 against the gains
the grid's Stack cells measured (the report's rank section, `experiments/rank_report.py`), and its cost: the
seconds it spent over all candidates, per candidate, and as a fraction of one target training (the mean
`train_seconds` of that target's successful Stack cells: what the grid spends per candidate and seed to measure
the gain instead). Writes JSON to --out and prints one line per estimator.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path


def costs(cells: list, cell) -> dict:
    """Per estimator of one rank cell: seconds over all candidates, per candidate, and / one Stack training."""
    from stepstone.experiments.cells import Kind, Setup, Status
    from stepstone.ranking import Ranking

    ranking = Ranking.from_dict(cell.ranking)
    trainings = [c.train_seconds for c in cells if c.kind is Kind.TARGET and c.status is Status.OK
                 and c.target == cell.target and c.method == cell.method and c.composition is Setup.STACK
                 and c.train_seconds is not None]
    train = statistics.fmean(trainings) if trainings else None
    out = {}
    for estimator in ranking.estimators:
        scores = [r.scores[estimator.value] for r in ranking.rows]
        total = sum(s.seconds for s in scores)
        per = total / len(scores)
        out[estimator.value] = {"seconds": round(total, 2), "seconds_per_candidate": round(per, 2),
                                "candidates": len(scores), "cached": sum(s.cached for s in scores),
                                "of_one_training": None if train is None else round(per / train, 4)}
    return {"stack_train_seconds": None if train is None else round(train, 2), "stack_cells": len(trainings),
            "estimators": out}


def measure(grid_dir: Path) -> dict:
    from stepstone.experiments.cells import Kind, Status
    from stepstone.experiments.rank_report import rank_tables
    from stepstone.experiments.report import load_cells

    cells = load_cells(grid_dir)
    tables = rank_tables(cells)
    ranked = [c for c in cells if c.kind is Kind.RANK and c.status is Status.OK]
    per_target = []
    for cell in ranked:
        agreement = [r for r in tables["rank_agreement"] if (r["target"], r["method"]) == (cell.target, cell.method)]
        candidates = [r for r in tables["rank_candidates"] if (r["target"], r["method"]) == (cell.target, cell.method)]
        per_target.append({"target": cell.target, "method": cell.method, "agreement": agreement,
                           "candidates": candidates, "cost": costs(cells, cell)})
    means = {}
    for estimator in dict.fromkeys(r["estimator"] for r in tables["rank_agreement"]):
        rows = [r for r in tables["rank_agreement"] if r["estimator"] == estimator]
        ratios = [t["cost"]["estimators"][estimator]["of_one_training"] for t in per_target
                  if estimator in t["cost"]["estimators"]]
        means[estimator] = {key: _mean(r[key] for r in rows) for key in ("spearman", "ndcg_at_3", "regret_at_1")}
        means[estimator]["of_one_training"] = _mean(ratios)
    return {"grid": str(grid_dir), "targets": per_target, "mean": means}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 4) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="A grid folder whose cells.jsonl holds rank cells.")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write.")
    args = parser.parse_args(argv)
    from stepstone.artifacts import write_text_atomic
    from stepstone.errors import StepstoneError

    try:
        result = measure(args.grid)
    except StepstoneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not result["targets"]:
        print(f"error: {args.grid}: no successful rank cell (run the grid with `rank:` set)", file=sys.stderr)
        return 2
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    write_text_atomic(args.out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    for estimator, mean in result["mean"].items():
        print(f"{estimator}: Spearman {mean['spearman']}, NDCG@3 {mean['ndcg_at_3']}, regret@1 {mean['regret_at_1']}, "
              f"cost per candidate {mean['of_one_training']} of one target training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
