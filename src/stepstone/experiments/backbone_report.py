"""The report of a grid over several backbones: every section per backbone, after a side-by-side table.

Cells record their backbone (`CellRecord.backbone`, since issue 16); a grid whose records name one backbone (or
none: older records) gets the ordinary report. With several, each backbone's cells get the whole report (headed
`## Backbone: NAME`, its sections one level down, its plots in `backbone_NAME/`), and *Backbones side by side*
compares them on what every backbone has: the same targets, headline entries and evaluated languages (the zero-shot
mean recomputed over the languages they share); what only some have is listed. Tables: each section's rows with a
`backbone` key, plus `backbones` (one row per entry and backbone) and `backbones_dropped`.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import ci_report
from .cells import CellRecord
from .report import _stats

TITLE = "Backbones side by side"


def backbones(cells: list[CellRecord]) -> list[str | None]:
    """The backbones the records name, in the order they first appear (None: a record without one)."""
    return list(dict.fromkeys(c.backbone for c in cells))


def _name(backbone: str | None) -> str:
    return "(not recorded)" if backbone is None else backbone


def _folders(names: list[str | None]) -> dict:
    """A plot folder per backbone: its last path part, made unique."""
    out: dict = {}
    for b in names:
        slug = "backbone_" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(_name(b)).name or "x")
        out[b] = slug if slug not in out.values() else f"{slug}_{len(out)}"
    return out


def build(grid_dir: Path, cells: list[CellRecord], plots: bool) -> tuple[str, dict[str, list[dict]], list[Path]]:
    """The markdown, tables and plots of a grid over several backbones."""
    from . import report
    names = backbones(cells)
    per = {b: report._tables([c for c in cells if c.backbone == b]) for b in names}
    side, dropped = side_by_side(names, per)
    written: list[Path] = []
    md = report._intro(grid_dir, cells, sum(len(t["not_learned"]) for t, _ in per.values()))
    md += [f"## {TITLE}", "", *_side_lines(names, side, dropped)]
    folders = _folders(names)
    for b in names:
        tables, chosen = per[b]
        body = report._headline_lines(tables["headline"], "###")
        body += report._body(tables, chosen, grid_dir / folders[b] if plots else None, written, "###")
        md += [f"## Backbone: {_name(b)}", "",
               *(re.sub(r"\]\(([^()/]+\.png)\)", rf"]({folders[b]}/\1)", line) for line in body)]
    merged = {key: [{"backbone": b, **row} for b in names for row in per[b][0][key]] for key in per[names[0]][0]}
    return "\n".join(md), {**merged, "backbones": side, "backbones_dropped": dropped}, written


def side_by_side(names: list, per: dict) -> tuple[list[dict], list[dict]]:
    """Per headline entry every backbone has: one row per backbone, the zero-shot mean ± std over the seeds, each
    cell's mean taken over the zero-shot languages every backbone evaluated for that target. And what was left out
    (targets, entries, languages only some backbones have)."""
    heads = {b: {(r["target"], r["column"]): r for r in per[b][0]["headline"]} for b in names}
    keys = [k for k in heads[names[0]] if all(k in heads[b] for b in names)]
    rows, dropped = [], []
    for target in dict.fromkeys(k[0] for b in names for k in heads[b]):
        if not all(any(k[0] == target for k in heads[b]) for b in names):
            dropped.append({"what": "target", "target": target, "column": None, "language": None,
                            "only": [_name(b) for b in names if any(k[0] == target for k in heads[b])]})
            continue
        evaluated = {b: {lang for (t, col), cells in per[b][1].items() if t == target for c in cells
                         for lang in c.scores} for b in names}
        shared = set.intersection(*evaluated.values())
        for lang in sorted(set.union(*evaluated.values()) - shared):
            dropped.append({"what": "language", "target": target, "column": None, "language": lang,
                            "only": [_name(b) for b in names if lang in evaluated[b]]})
        for column in dict.fromkeys(k[1] for b in names for k in heads[b] if k[0] == target):
            if (target, column) not in keys:
                dropped.append({"what": "entry", "target": target, "column": column, "language": None,
                                "only": [_name(b) for b in names if (target, column) in heads[b]]})
        for column in (k[1] for k in keys if k[0] == target):
            for b in names:
                r, members = heads[b][target, column], per[b][1][target, column]
                scores = [[v for lang, v in c.scores.items() if lang in shared and lang != (c.train_language or "en")]
                          for c in members]
                scores = [sum(s) / len(s) for s in scores if s]
                mean, std, n = _stats(scores) if scores else (None, None, 0)
                # the paired bootstrap interval of this backbone minus the first, on the same examples (ci_report)
                versus = None if b == names[0] else ci_report.gain(per[names[0]][1][target, column], members,
                                                                   langs=sorted(shared))
                rows.append({"target": target, "column": column, "setup": r["setup"], "method": r["method"],
                             "composition": r["composition"], "intermediate": r["intermediate"], "backbone": _name(b),
                             "mean": mean, "std": std, "n": n, "languages": sorted(shared),
                             "versus_first": None if versus is None else versus.to_dict()})
    return rows, dropped


def _side_lines(names: list, rows: list[dict], dropped: list[dict]) -> list[str]:
    from .report import _f, _md
    labels = [_name(b) for b in names]
    body = ["Zero-shot mean ± std (n seeds) per backbone, each cell's mean over the zero-shot languages every "
            "backbone evaluated for the target; only targets and headline entries every backbone has. After the "
            f"first backbone, where the cells hold per-example statistics: the difference from {labels[0]} with its "
            "95% paired bootstrap interval (* = excludes 0).", ""]
    value = {(r["target"], r["column"], r["backbone"]): r for r in rows}

    def text(r: dict) -> str:
        if r["mean"] is None:
            return "–"
        out = f"{_f(r['mean'])} ± {_f(r['std'])} (n={r['n']})"
        if r.get("versus_first"):
            out += f"; {ci_report._ci(r['versus_first'], sign=True, star=True)}"
        return f"{r['intermediate']}: {out}" if r["intermediate"] not in (None, r["composition"]) else out
    entries = list(dict.fromkeys((r["target"], r["column"]) for r in rows))
    by_entry = {e: next(r for r in rows if (r["target"], r["column"]) == e) for e in entries}
    body += [_md(["target", "setup", "method", *labels], [
        [t, by_entry[t, c]["setup"], str(by_entry[t, c]["method"]), *(text(value[t, c, b]) for b in labels)]
        for t, c in entries], "_no target and headline entry that every backbone has_"), ""]
    if dropped:
        plural = {"target": "targets", "entry": "headline entries", "language": "languages"}
        parts = []
        for kind, heading in plural.items():
            items = [" ".join(str(d[k]) for k in ("target", "column", "language") if d[k] is not None)
                     + f" (only {', '.join(d['only'])})" for d in dropped if d["what"] == kind]
            parts += [f"{heading}: " + ", ".join(items)] if items else []
        body += ["Left out (not on every backbone): " + "; ".join(parts) + ".", ""]
    return body
