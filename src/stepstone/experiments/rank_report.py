"""The report's rank section: did a grid's rank cell predict the gains its Stack cells measured?

A rank cell (`Kind.RANK`, its `ranking` a `stepstone.ranking.Ranking.to_dict()`) scores each candidate (a zoo
adapter, or "none": the bare backbone) for one target and method. Its measured gain is the candidate's Stack cells'
mean zero-shot score minus that of the target adapter alone (`none` cells), over the seeds at which all of them
succeeded; per estimator, `stepstone.ranking.agreement` compares the scores with those gains. Tables keep raw
numbers (`rank_agreement`, `rank_candidates`: one dict per row); the section formats them and plots score vs gain.
A grid without rank cells gets empty tables and no section.
"""
from __future__ import annotations

import re
import statistics
from pathlib import Path

from ..ranking import NONE, Ranking
from ..ranking.agreement import ndcg_at_k, regret_at_1, spearman, tied_for_top, top
from .axes_report import main_cells
from .cells import CellRecord, Kind, Setup, Status
from .report import _escape, _f, _md, _save, _zero_shot

TITLE = "Choosing intermediate tasks: rank vs measured gain"
K = 3  # NDCG@3: the top three picks, as many as a grid would run every seed for on a budget
DEFINITIONS = """\
- **Measured gain** of a candidate: the mean zero-shot score of its Stack cells (target adapter on the
  candidate's intermediate adapter) minus that of the `none` cells (the target adapter alone) of the same target
  and method, over the seeds at which the `none` cell and every compared candidate's Stack cell succeeded (listed
  per table); `none` (no intermediate adapter) has gain +0.0 by definition. A candidate without a successful
  Stack cell has no measured gain and is left out of every measure.
- **Score (rank)**: the estimator's score (higher = predicted to help more) and its rank among the candidates
  with a measured gain (ties: by name).
- **Spearman**: rank correlation of the scores with the measured gains (Pearson correlation of the ranks; tied
  values share their mean rank); 1.00 = the same order, -1.00 = the reverse; – with fewer than two candidates or
  a constant side.
- **NDCG@3**: the estimator's top three, each weighted by its relevance / log2(position + 1), over the same sum
  for the measured order; relevance = measured gain minus the smallest measured gain among the candidates, so the
  worst candidate counts 0 (Poth et al. 2021 use the target score itself, on which any order scores close to
  1.00); candidates with equal scores share their positions at their mean relevance (McSherry & Najork 2008); –
  when all gains are equal.
- **regret@1**: the best measured gain minus the measured gain of the estimator's top pick, in points; 0.0 =
  it picked the best candidate; candidates tied for the top score count by their mean gain (*picked* then says
  how many share it).
- **mean**: over the targets and methods where the measure is defined."""


def rank_tables(cells: list[CellRecord]) -> dict[str, list[dict]]:
    """`rank_agreement` (per target, method and estimator: n, the three measures, its pick, the best) and
    `rank_candidates` (per target, method, candidate and estimator: measured gain, score, rank, why left out)."""
    agreement, candidates = [], []
    cells = main_cells(cells)  # the sequential and data-size cells are no candidate's Stack cells
    ranked = [c for c in cells if c.kind is Kind.RANK and c.status is Status.OK]
    for cell in sorted(ranked, key=lambda c: (c.target, str(c.method), str(c.backbone))):
        ranking = Ranking.from_dict(cell.ranking)
        mine = [c for c in cells if c.backbone == cell.backbone]  # a grid of several backbones ranks on each
        gains, seeds, left_out, note = _measure(mine, cell.target, cell.method, ranking)
        for estimator in map(str, ranking.estimators):
            scores = {r.candidate: r.value(estimator) for r in ranking.rows}
            predicted = {n: v for n, v in scores.items() if v is not None and n in gains}
            measured = {n: gains[n] for n in predicted}
            rank = {n: i for i, n in enumerate(sorted(predicted, key=lambda n: (-predicted[n], n)), 1)}
            agreement.append({"target": cell.target, "method": cell.method, "estimator": estimator,
                              "n": len(predicted), "seeds": list(seeds), "spearman": spearman(predicted, measured),
                              "ndcg_at_3": ndcg_at_k(predicted, measured, K),
                              "regret_at_1": regret_at_1(predicted, measured), "picked": top(predicted),
                              "tied": tied_for_top(predicted),
                              "best": top(measured), "note": note})
            candidates += [{"target": cell.target, "method": cell.method, "candidate": r.candidate,
                            "intermediate": r.intermediate, "estimator": estimator, "score": scores[r.candidate],
                            "rank": rank.get(r.candidate), "gain": gains.get(r.candidate),
                            "left_out": left_out.get(r.candidate)} for r in ranking.rows]
    return {"rank_agreement": agreement, "rank_candidates": candidates}


def _measure(cells: list[CellRecord], target: str, method: str | None,
             ranking: Ranking) -> tuple[dict[str, float], tuple, dict[str, str], str | None]:
    """(candidate -> measured gain, the seeds it is measured over, candidate -> why it has none, why no candidate
    has one). The seeds: those of the `none` cells that every candidate with a successful Stack cell has too."""
    mine = [c for c in cells if c.kind is Kind.TARGET and c.target == target and c.method == method]
    scored = [c for c in mine if c.status is Status.OK and _zero_shot(c) is not None]
    bare = {c.seed: c for c in scored if c.composition is Setup.NONE}
    stacks, left_out = {}, {}
    for row in ranking.rows:
        if row.candidate == NONE:
            continue
        by_seed = {c.seed: c for c in scored if c.composition is Setup.STACK and c.intermediate == row.intermediate}
        if by_seed:
            stacks[row.candidate] = by_seed
        else:
            left_out[row.candidate] = _why([c for c in mine if c.composition is Setup.STACK
                                            and c.intermediate == row.intermediate], row.intermediate)
    seeds = sorted(set(bare).intersection(*map(set, stacks.values())), key=lambda s: (s is None, s or 0))
    if not seeds:
        return {}, (), left_out, ("no successful `none` cell" if not bare else
                                  "no seed at which the `none` cell and every candidate's Stack cell succeeded")
    base = statistics.fmean(_zero_shot(bare[s]) for s in seeds)
    gains = {name: statistics.fmean(_zero_shot(by_seed[s]) for s in seeds) - base for name, by_seed in stacks.items()}
    if any(r.candidate == NONE for r in ranking.rows):
        gains[NONE] = 0.0  # the bare backbone is the `none` cells themselves
    return gains, tuple(seeds), left_out, None


def _why(stack_cells: list[CellRecord], intermediate: str | None) -> str:
    """Why a candidate has no measured gain, in a few words."""
    failed = [c for c in stack_cells if c.status is Status.ERROR]
    if failed:
        return f"its Stack cell failed: {failed[-1].error}"
    if stack_cells:
        return "its Stack cell has no zero-shot score"
    return f"no Stack cell with {intermediate}" if intermediate else "no intermediate task recorded"


def _corr(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}".replace("-0.00", "0.00")


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}".replace("-0.000", "0.000")


def rank_section(tables: dict[str, list[dict]], plot_dir: Path | None, written: list[Path]) -> list[str]:
    """The section's markdown lines (none without rank cells); a plot per target and method into `plot_dir`."""
    agreement = tables["rank_agreement"]
    if not agreement:
        return []
    body = [DEFINITIONS, "", _agreement_table(agreement), ""]
    for target, method in dict.fromkeys((r["target"], r["method"]) for r in agreement):
        pair = [r for r in agreement if (r["target"], r["method"]) == (target, method)]
        rows = [r for r in tables["rank_candidates"] if (r["target"], r["method"]) == (target, method)]
        body += _pair_lines(target, method, pair, rows)
        if plot_dir is not None and any(r["gain"] is not None and r["score"] is not None for r in rows):
            name = "rank_" + "_".join(re.sub(r"[^A-Za-z0-9_.-]", "_", str(p)) for p in (target, method)) + ".png"
            written.append(_save(_scatter_figure(target, method, pair, rows), plot_dir / name))
            body += [f"![{target} {method}: estimator score vs measured gain]({name})", ""]
    return body


def _agreement_table(agreement: list[dict]) -> str:
    rows = [[r["target"], str(r["method"]), r["estimator"], str(r["n"]), _corr(r["spearman"]),
             _corr(r["ndcg_at_3"]), _f(r["regret_at_1"]), _picked(r), str(r["best"] or "–")] for r in agreement]
    for estimator in dict.fromkeys(r["estimator"] for r in agreement):
        mine = [r for r in agreement if r["estimator"] == estimator]
        mean = {key: _mean_of(r[key] for r in mine) for key in ("spearman", "ndcg_at_3", "regret_at_1")}
        rows.append(["mean", "–", estimator, "–", _corr(mean["spearman"]), _corr(mean["ndcg_at_3"]),
                     _f(mean["regret_at_1"]), "–", "–"])
    return _md(["target", "method", "estimator", "n", "Spearman", f"NDCG@{K}", "regret@1", "picked",
                "best measured"], rows)


def _picked(row: dict) -> str:
    """The estimator's top candidate; a tie for the top says how many share it (regret@1 counts their mean)."""
    if row["picked"] is None:
        return "–"
    others = len(row["tied"]) - 1
    return f"{row['picked']} (tied with {others} more)" if others > 0 else str(row["picked"])


def _mean_of(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _pair_lines(target: str, method: str | None, pair: list[dict], rows: list[dict]) -> list[str]:
    """One target and method: its seeds, its candidates' table (best measured first), who was left out."""
    estimators = [r["estimator"] for r in pair]
    seeds = pair[0]["seeds"]
    seeds = f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})" if seeds else ""
    lines = [f"**{target} [{method}]**{seeds}", ""]
    if pair[0]["note"]:
        lines += [f"No measured gains: {pair[0]['note']}.", ""]
    cell = {(r["candidate"], r["estimator"]): r for r in rows}
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    gain = {r["candidate"]: r["gain"] for r in rows}
    names.sort(key=lambda n: (gain[n] is None, -(gain[n] or 0.0), n))
    lines += [_md(["candidate", "measured gain", *estimators], [
        [name, _f(gain[name], sign=True), *(_ranked(cell[name, e]) for e in estimators)] for name in names]), ""]
    left = {r["candidate"]: r["left_out"] for r in rows if r["left_out"]}
    if left:
        lines += ["Left out (no measured gain): " + "; ".join(f"{n} ({_escape(why)})" for n, why in left.items())
                  + ".", ""]
    return lines


def _ranked(row: dict) -> str:
    text = _score(row["score"])
    return text if row["rank"] is None else f"{text} ({row['rank']})"


def _scatter_figure(target: str, method: str | None, pair: list[dict], rows: list[dict]):
    """Estimator score (x) vs measured gain (y), one panel per estimator with scores, points named by candidate;
    the line at 0 is the target adapter alone."""
    from matplotlib.figure import Figure
    panels = [(r, [c for c in rows if c["estimator"] == r["estimator"] and c["gain"] is not None
                   and c["score"] is not None]) for r in pair]
    panels = [(r, points) for r, points in panels if points]
    fig = Figure(figsize=(0.8 + 3.6 * len(panels), 3.6), layout="constrained")
    for k, (ax, (summary, points)) in enumerate(zip(fig.subplots(1, len(panels), squeeze=False)[0], panels)):
        ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
        ax.margins(x=0.2, y=0.15)  # room for the names beside the outermost points
        ax.scatter([p["score"] for p in points], [p["gain"] for p in points], s=18, zorder=2)
        for p in points:
            ax.annotate(p["candidate"], (p["score"], p["gain"]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7)
        ax.set(title=f"{summary['estimator']}: Spearman {_corr(summary['spearman'])}",
               xlabel=f"{summary['estimator']} score (higher: predicted better)")
        if k == 0:
            ax.set_ylabel("measured zero-shot gain\nover none (points)")
    fig.suptitle(f"{target} [{method}]: estimator score vs measured gain", fontsize=9)
    return fig
