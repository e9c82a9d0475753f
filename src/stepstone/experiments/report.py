"""The report of a transfer-experiment grid: `GRID_DIR/cells.jsonl` -> `report.md`, tables and PNG plots.

The zero-shot score of a cell is its main metric averaged over the evaluated languages other than the training
language (English); seeds are aggregated as mean +- sample standard deviation. Tables keep raw numbers (one dict per
row, long format); the markdown and `terminal_rows` format them with one decimal. Plots are drawn on an explicit Agg
canvas (no pyplot, no global backend switch) and written atomically next to report.md.
"""
from __future__ import annotations

import io
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import check_destination, write_bytes_atomic, write_text_atomic
from ..errors import StepstoneError
from .cells import BLOCK_MEMBERS, BLOCK_OF, CELLS, CellRecord, Kind, Members, Setup, Status, best_intermediate, ranked_pick, read_cells

SETUPS = tuple(s.value for s in Setup if s is not Setup.INTERMEDIATE)  # headline column order
# a setup run once per intermediate shows its best one (the best-stack rule)
LABEL = {s.value: f"best {s.value}" for s, block in BLOCK_OF.items() if BLOCK_MEMBERS[block] is Members.EACH}
BAR_SETUPS = tuple(LABEL.get(s, s) for s in SETUPS if s != Setup.FULL_AFTER.value)  # the per-language bars
DEFINITIONS = """\
- **Zero-shot score**: the main metric of a cell averaged over its evaluated languages other than the training
  language (English); the English score is reported separately.
- **Over seeds**: mean ± sample standard deviation (ddof=1) of the zero-shot scores of the successful cells;
  ±0.0 when n=1; n = number of seeds.
- **Best stack**: per target and method, the intermediate task whose first-seed stack cell has the best English
  dev score (ties: alphabetical): the grid's own rule for which stack gets every seed, never the reported scores.
- **Gain**: mean zero-shot score minus that of the same method's baseline: `none` (the target adapter alone) for
  adapter methods, `full` (plain full fine-tuning) for full fine-tuning.
- **Costs**: means over successful cells; MB = 10^6 bytes; trainable % is relative to the backbone.
- **⚠ did not learn**: at least one run of the entry did not learn (`stepstone.health`: English dev score at the
  chance / majority-class level, or a training loss that never left its starting value); in the stack-gain table,
  the intermediate adapter did not. *Runs that did not learn* lists them with the reason.
- All numbers are in percent points (metrics) or the stated unit, with one decimal."""
FLAG = "⚠"


@dataclass(frozen=True)
class Report:
    markdown: str
    tables: dict[str, list[dict]]
    plots: list[Path]


def load_cells(grid_dir: Path) -> list[CellRecord]:
    """Every cell of a grid (ok and failed), each validated; a cell written more than once counts with its
    last line. An unterminated, unreadable last line is a record being written (or cut short by a kill) and
    is skipped, as the runner does (`cells.read_cells`)."""
    path = Path(grid_dir) / CELLS
    if not path.is_file():
        raise StepstoneError(f"{path}: not found; is '{grid_dir}' a grid folder? Run the grid first")
    cells = read_cells(path, strict=True)
    if not cells:
        raise StepstoneError(f"{path}: no cells; the grid has not run yet")
    return list(cells.values())


def _not_learned(cell: CellRecord) -> bool:
    """The cell's run did not learn (stepstone.health's verdict, recorded by the grid; older records have none)."""
    return (cell.learning or {}).get("verdict") == "not-learned"


def _zero_shot(cell: CellRecord) -> float | None:
    others = [v for lang, v in cell.scores.items() if lang != (cell.train_language or "en")]
    return statistics.fmean(others) if others else None


def _stats(values: list[float]) -> tuple[float, float, int]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _per_language(cells: list[CellRecord]) -> dict[str, tuple[float, float]]:
    """Language -> (mean, std) over the cells that evaluated it."""
    langs = sorted({lang for c in cells for lang in c.scores}, key=lambda lang: (lang != "en", lang))
    return {lang: _stats([c.scores[lang] for c in cells if lang in c.scores])[:2] for lang in langs}


def _groups(cells: list[CellRecord], kinds: tuple[Kind, ...], key,
            scored: bool = True) -> dict[tuple, list[CellRecord]]:
    """Successful cells of the given kinds grouped by `key(cell)`; with `scored`, only those with a zero-shot score."""
    groups: dict[tuple, list[CellRecord]] = {}
    for c in cells:
        if c.status is Status.OK and c.kind in kinds and not (scored and _zero_shot(c) is None):
            groups.setdefault(key(c), []).append(c)
    return groups


def _order(values, first=SETUPS):
    return sorted(values, key=lambda v: (v is None, first.index(v) if v in first else len(first), str(v)))


def _headline(cells: list[CellRecord]) -> tuple[list[dict], dict[tuple[str, str], list[CellRecord]]]:
    """One row per (target, method, setup); for a setup run with several intermediates, the best one."""
    groups = _groups(cells, (Kind.TARGET,), lambda c: (c.target, c.method, c.composition, c.intermediate))
    picks = {(c.target, c.method): ranked_pick(c) for c in cells if c.kind is Kind.RANK}  # stack_pick: an estimator
    rows, chosen = [], {}
    for target in sorted({k[0] for k in groups}):
        best: dict[tuple, tuple] = {}
        for method, comp in {k[1:3] for k in groups if k[0] == target}:
            inters = [k[3] for k in groups if k[:3] == (target, method, comp)]
            # the runner's rule (never the scores being reported): its rank cell's pick where the grid picked by an
            # estimator, else the best dev score; no dev score at all: the last name
            pick = picks.get((target, method)) if comp in LABEL else None
            inter = pick if pick is not None and pick in inters else best_intermediate(
                [c for i in inters for c in groups[target, method, comp, i]], fallback=lambda: max(inters, key=str))
            best[method, comp] = inter, groups[target, method, comp, inter]
        for comp in _order({k[1] for k in best}):
            for method in _order({m for m, c in best if c == comp}, ()):
                inter, members = best[method, comp]
                mean, std, n = _stats([_zero_shot(c) for c in members])
                base = best.get((method, Setup.FULL if method == "full" else Setup.NONE))
                setup = LABEL.get(comp, str(comp))
                column = setup if method in (None, "full") else f"{setup} [{method}]"
                rows.append({"target": target, "metric": members[0].metric, "column": column, "setup": setup,
                             "method": method, "composition": comp, "intermediate": inter, "mean": mean, "std": std,
                             "n": n, "english": _mean(c.scores.get("en") for c in members),
                             "not_learned": sum(map(_not_learned, members)),
                             "gain": None if base is None or base[1] is members
                             else mean - _stats([_zero_shot(c) for c in base[1]])[0]})
                chosen[target, column] = members
    return rows, chosen


def _stack_gain(cells: list[CellRecord], headline: list[dict]) -> list[dict]:
    """Heatmap data: per method, intermediate and target, stack-with-that-intermediate minus `none`."""
    base = {(r["target"], r["method"]): r["mean"] for r in headline if r["composition"] is Setup.NONE}
    groups = _groups([c for c in cells if c.composition is Setup.STACK], (Kind.TARGET,),
                     lambda c: (c.method, c.intermediate, c.target))
    metric = {r["target"]: r["metric"] for r in headline}
    flagged = {(c.method, c.task) for c in cells if c.kind is Kind.INTERMEDIATE and _not_learned(c)}
    return [{"method": m, "intermediate": i, "target": t, "metric": metric.get(t),
             "gain": _mean(map(_zero_shot, g)) - base[t, m], "intermediate_not_learned": (m, i) in flagged}
            for (m, i, t), g in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))) if (t, m) in base]


def _gain_by_language(headline: list[dict], chosen: dict) -> list[dict]:
    rows = []
    for r in headline:
        none = next((b for b in headline if b["target"] == r["target"] and b["method"] == r["method"]
                     and b["composition"] is Setup.NONE), None)
        if r["composition"] is Setup.STACK and none is not None:
            stack = _per_language(chosen[r["target"], r["column"]])
            bare = _per_language(chosen[none["target"], none["column"]])
            rows += [{"target": r["target"], "method": r["method"], "intermediate": r["intermediate"], "language": lang,
                      "none": bare[lang][0], "best_stack": stack[lang][0], "gain": stack[lang][0] - bare[lang][0]}
                     for lang in stack if lang in bare]
    return rows


def _retrieval(cells: list[CellRecord]) -> list[dict]:
    groups = _groups(cells, (Kind.RETRIEVAL,), lambda c: (c.target, c.method, c.intermediate))
    rows = []
    for (target, method, inter), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1:] != (None, None),
                                                                                    tuple(map(str, kv[0][1:])))):
        bare = groups.get((target, None, None))
        zero_shot = _mean(map(_zero_shot, members))
        rows.append({"target": target, "model": "bare backbone" if (method, inter) == (None, None)
                     else f"{inter or 'no intermediate'} [{method}]", "method": method, "intermediate": inter,
                     "n": len(members), "zero_shot": zero_shot,
                     "scores": {k: v[0] for k, v in _per_language(members).items()},
                     "gain": None if bare is None or bare is members else zero_shot - _mean(map(_zero_shot, bare))})
    return rows


def _costs(cells: list[CellRecord]) -> list[dict]:
    groups = _groups(cells, (Kind.INTERMEDIATE, Kind.TARGET), lambda c: (c.method, c.composition), scored=False)
    order = tuple(s.value for s in Setup)
    keys = sorted(groups, key=lambda k: (k[0] is None, str(k[0]), order.index(k[1]) if k[1] in order else 99,
                                         str(k[1])))
    return [{"method": m, "composition": comp, "n": len(g),
             "trainable_parameters": _mean(c.trainable_parameters for c in g),
             "trainable_percent": _mean(c.trainable_percent for c in g),
             "weights_mb": _mean(c.weights_bytes and c.weights_bytes / 1e6 for c in g),
             "train_seconds": _mean(c.train_seconds for c in g), "peak_rss_mb": _mean(c.peak_rss_mb for c in g)}
            for (m, comp), g in ((key, groups[key]) for key in keys)]


def _f(value, sign: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value:+.1f}" if sign else f"{value:.1f}"
    return text.replace("-0.0", "+0.0" if sign else "0.0")


def _count(value) -> str:
    unit, size = next(((u, s) for u, s in (("B", 1e9), ("M", 1e6), ("K", 1e3)) if abs(value or 0) >= s), ("", 1))
    return "–" if value is None else f"{value / size:.1f}{unit}"


def _cell(row: dict) -> str:
    text = f"{_f(row['mean'])} ± {_f(row['std'])} (n={row['n']})"
    text = f"{row['intermediate']}: {text}" if row["intermediate"] not in (None, row["composition"]) else text
    text = text if row["gain"] is None else f"{text} ({_f(row['gain'], sign=True)})"
    return f"{text} {FLAG}" if row.get("not_learned") else text


def _not_learned_rows(cells: list[CellRecord]) -> list[dict]:
    """Every successful cell whose run did not learn, with the numbers the verdict looked at."""
    return [{"id": c.id, "kind": c.kind, **{k: c.learning.get(k) for k in (
        "reason", "metric", "dev", "level", "loss_start", "loss_end")}}
            for c in cells if c.status is Status.OK and _not_learned(c)]


def _pivot(rows: list[dict], fmt) -> tuple[list[str], list[list[str]]]:
    keys = {r["column"]: (SETUPS.index(r["composition"]) if r["composition"] in SETUPS else 99, str(r["composition"]),
                          r["method"] is None, str(r["method"])) for r in rows}
    columns = sorted(keys, key=keys.get)
    targets = list(dict.fromkeys(r["target"] for r in rows))
    values = {(r["target"], r["column"]): fmt(r) for r in rows}
    return ["target", *columns], [[t, *(values.get((t, c), "–") for c in columns)] for t in targets]


def terminal_rows(report: Report) -> list[list[str]]:
    """The headline table as strings: the header row first, then one row per target."""
    headline = report.tables["headline"]  # several backbones: a row per backbone and target
    headline = [{**r, "target": f"{r['target']} ({r['backbone']})"} if "backbone" in r else r for r in headline]
    header, rows = _pivot(headline, _cell)
    return [header, *rows]


def _md(header: list[str], rows: list[list[str]], empty: str = "_none_") -> str:
    lines = ["| " + " | ".join(r) + " |" for r in (header, ["---"] * len(header), *rows)]
    return "\n".join(lines) if rows else empty


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour `rgba` (0-1 floats): WCAG relative luminance of
    the sRGB colour, white below 0.179, where black and white give the same contrast ratio."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgba[:3])
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.179 else "black"


def _heatmap(rows: list[dict], path: Path) -> Path:
    return _save(_heatmap_figure(rows), path)


def _heatmap_figure(rows: list[dict]):
    """Stack gain per intermediate (rows) x target (columns), one panel per method."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    methods = _order({r["method"] for r in rows}, ())
    inters, targets = sorted({str(r["intermediate"]) for r in rows}), sorted({r["target"] for r in rows})
    metric = {r["target"]: r.get("metric") for r in rows}
    limit = max(abs(r["gain"]) for r in rows) or 1.0
    fig = Figure(figsize=(2.5 + 1.3 * len(targets) * len(methods), 1.8 + 0.5 * len(inters)), layout="constrained")
    cmap = colormaps["RdBu"].with_extremes(bad="0.85")  # no cell (not run): grey, never white, which is a gain of 0
    any_flagged = False
    for k, (ax, method) in enumerate(zip(fig.subplots(1, len(methods), squeeze=False)[0], methods)):
        grid = np.full((len(inters), len(targets)), np.nan)
        for r in rows:
            if r["method"] == method:
                grid[inters.index(str(r["intermediate"])), targets.index(r["target"])] = r["gain"]
        image = ax.imshow(grid, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, _f(value, sign=True), ha="center", va="center", fontsize=8,
                        color=_text_colour(image.cmap(image.norm(value))))
        flagged = {str(r["intermediate"]) for r in rows if r["method"] == method and r.get("intermediate_not_learned")}
        any_flagged = any_flagged or bool(flagged)
        ax.set(xticks=range(len(targets)), yticks=range(len(inters)),
               xticklabels=[f"{t}\n({metric[t]})" if metric[t] else t for t in targets],
               yticklabels=[f"{i} {FLAG}" if i in flagged else i for i in inters],
               xlabel="target task (zero-shot metric)", title=f"Stack gain [{method}]")
        if k == 0:
            ax.set_ylabel("intermediate task (stacked)")
    if any_flagged:
        fig.suptitle(f"{FLAG}: the intermediate adapter did not learn", fontsize=8)
    fig.colorbar(image, ax=fig.axes, label="zero-shot gain over the\ntarget adapter alone (points)")
    return fig


def _bars(target: str, metric: str | None, series: dict[str, tuple[dict[str, tuple[float, float]], int]],
          path: Path) -> Path:
    return _save(_bars_figure(target, metric, series), path)


def _bars_figure(target: str, metric: str | None, series: dict[str, tuple[dict[str, tuple[float, float]], int]]):
    """Per-language scores of one target: a bar per series (label -> ({language: (mean, std)}, seeds)), error bars
    one sample standard deviation over the series' seeds (none for a single seed)."""
    from matplotlib.figure import Figure
    langs = list(dict.fromkeys(lang for values, _ in series.values() for lang in values))
    fig = Figure(figsize=(min(16.0, 3.5 + 0.25 * len(langs) * (len(series) + 1)), 3.8), layout="constrained")
    ax, width = fig.subplots(), 0.8 / len(series)
    for k, (label, (values, n)) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i, lang in enumerate(langs) if lang in values]
        ax.bar(xs, [values[lang][0] for lang in langs if lang in values], width,
               yerr=[values[lang][1] for lang in langs if lang in values] if n > 1 else None,
               label=f"{label} (n={n})", capsize=2)
    ax.set_xticks(range(len(langs)), langs, rotation=90 if len(langs) > 15 else 0)
    ax.set(title=f"{target}: {metric or 'score'} per language", ylabel=f"{metric or 'score'} (%)",
           xlabel="evaluation language (en: the training language)")
    fig.legend(loc="outside right upper", fontsize=7, title="error bars: ± std over n seeds", title_fontsize=7)
    return fig


def _loss(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _escape(text) -> str:
    """A value as the text of one markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def build_report(grid_dir: Path, *, plots: bool = True) -> Report:
    """Read GRID_DIR/cells.jsonl, write GRID_DIR/report.md (and PNGs with `plots`), return the Report. A grid of
    several backbones gets every section per backbone, after a side-by-side table (`backbone_report`)."""
    grid_dir = Path(grid_dir)
    cells = load_cells(grid_dir)
    check_destination(grid_dir / "report.md", "write")  # before the plots are drawn
    from . import backbone_report
    if len(backbone_report.backbones(cells)) > 1:
        markdown, tables, written = backbone_report.build(grid_dir, cells, plots)
    else:
        tables, chosen = _tables(cells)
        written: list[Path] = []
        md = _head(grid_dir, cells, tables)
        md += _body(tables, chosen, grid_dir if plots else None, written)
        markdown = "\n".join(md)
    write_text_atomic(grid_dir / "report.md", markdown)
    return Report(markdown, tables, written)


def _body(tables: dict, chosen: dict, plot_dir: Path | None, written: list[Path], level: str = "##") -> list[str]:
    """The sections after the headline, each headed at `level`."""
    md: list[str] = []
    for title, body in _sections(tables, chosen, plot_dir, written):
        if body:  # a section with nothing in it is left out
            md.extend([f"{level} {title}", "", *body])
    return md


def _tables(cells: list[CellRecord]) -> tuple[dict[str, list[dict]], dict]:
    """Every table of the report (raw numbers) and, per headline entry, the cells it aggregates."""
    from . import axes_report  # here, not at the top: axes_report builds on this module's helpers
    main = axes_report.main_cells(cells)  # without the sequential and data-size cells: they have their own sections
    headline, chosen = _headline(main)
    tables = {"headline": headline, "stack_gain": _stack_gain(main, headline),
              "gain_by_language": _gain_by_language(headline, chosen), "retrieval": _retrieval(main),
              "costs": _costs(main), "failures": [{"id": c.id, "kind": c.kind, "error": c.error}
                                                  for c in cells if c.status is Status.ERROR]}
    tables["not_learned"] = _not_learned_rows(cells)
    from .rank_report import rank_tables  # here, not at the top: rank_report builds on this module's helpers
    tables.update(rank_tables(cells))
    tables.update(axes_report.axes_tables(cells, tables, chosen))
    from .ci_report import ci_tables  # here, not at the top: ci_report builds on this module's helpers
    tables.update(ci_tables(cells, tables, chosen))
    return tables, chosen


def _head(grid_dir: Path, cells: list[CellRecord], tables: dict) -> list[str]:
    """Title, cell counts, definitions and the headline tables."""
    return _intro(grid_dir, cells, len(tables["not_learned"])) + _headline_lines(tables["headline"])


NOTES = "notes.md"  # a grid folder's own notes (its design, what it found), printed after the report's title


def _intro(grid_dir: Path, cells: list[CellRecord], not_learned: int) -> list[str]:
    """Title, the grid folder's notes.md (where there is one), cell counts and definitions."""
    ok = sum(c.status is Status.OK for c in cells)
    notes = grid_dir / NOTES
    try:
        own = [notes.read_text(encoding="utf-8").strip(), ""] if notes.is_file() else []
    except (OSError, UnicodeDecodeError) as err:
        raise StepstoneError(f"{notes}: cannot read the grid's notes ({err})") from None
    return [f"# Transfer report: {grid_dir.name}", "", *own,
            f"{len(cells)} cells: {ok} ok, {len(cells) - ok} failed"
            + (f"; {not_learned} did not learn {FLAG}." if not_learned else "."), "",
            "## Definitions", "", DEFINITIONS, ""]


def _headline_lines(headline: list[dict], level: str = "##") -> list[str]:
    md = [f"{level} Headline: zero-shot score", "", _md(*_pivot(headline, _cell), "_no successful target cells_"), ""]
    if headline:
        md += ["English score (mean over seeds):", "", _md(*_pivot(headline, lambda r: _f(r["english"]))), ""]
    return md


def _sections(tables: dict, chosen: dict, plot_dir: Path | None, written: list[Path]):
    """(title, markdown lines) of every section after the headline, in order; plots go to `plot_dir` (None: no
    plots) and are added to `written`. A section of a new metric: one more function here."""
    from . import axes_report, ci_report, rank_report
    yield from axes_report.headline_sections(tables)
    yield from ci_report.sections(tables)
    yield "Stack gain by intermediate task", _stack_gain_section(tables["stack_gain"], plot_dir, written)
    yield "Per-language scores", _per_language_section(tables["headline"], chosen, plot_dir, written)
    yield "Gain of the best stack by language", _gain_by_language_section(tables["gain_by_language"])
    yield rank_report.TITLE, rank_report.rank_section(tables, plot_dir, written)
    yield from axes_report.sections(tables, plot_dir, written)
    yield "Retrieval", _retrieval_section(tables["retrieval"])
    yield f"Runs that did not learn {FLAG}", _not_learned_section(tables["not_learned"])
    yield "Costs", _costs_section(tables["costs"])
    yield "Failed cells", ([_md(["id", "error"], [[r["id"], _escape(r["error"])] for r in tables["failures"]]), ""]
                           if tables["failures"] else [])


def _stack_gain_section(rows: list[dict], plot_dir: Path | None, written: list[Path]) -> list[str]:
    body = []
    if plot_dir is not None and rows:
        written.append(_heatmap(rows, plot_dir / "heatmap_gain.png"))
        body += ["![stack gain heatmap](heatmap_gain.png)", ""]
    if rows:
        body += [_md(["method", "intermediate", "target", "gain"], [
            [str(r["method"]), str(r["intermediate"]) + (f" {FLAG}" if r["intermediate_not_learned"] else ""),
             r["target"], _f(r["gain"], sign=True)] for r in rows]), ""]
    return body


def _per_language_section(headline: list[dict], chosen: dict, plot_dir: Path | None,
                          written: list[Path]) -> list[str]:
    body = []
    for target in dict.fromkeys(r["target"] for r in headline) if plot_dir is not None else ():
        series = {(r["column"] if not r["intermediate"] or r["intermediate"] == r["composition"]
                   else f"{r['column']} ({r['intermediate']})") + (f" {FLAG}" if r["not_learned"] else ""):
                  (_per_language(chosen[target, r["column"]]), r["n"])
                  for r in headline if r["target"] == target and r["setup"] in BAR_SETUPS}
        if not series:
            continue
        metric = next(r["metric"] for r in headline if r["target"] == target)
        name = "lang_" + re.sub(r"[^A-Za-z0-9_.-]", "_", target) + ".png"
        written.append(_bars(target, metric, series, plot_dir / name))
        body += [f"![{target} per language]({name})", ""]
    if body:
        body = ["Bars: mean over seeds; error bars: ± one sample standard deviation over the n seeds in the legend "
                "(none for n=1).", "", *body]
    return body


def _gain_by_language_section(gains: list[dict]) -> list[str]:
    body = []
    for target in dict.fromkeys(r["target"] for r in gains):
        rows = [r for r in gains if r["target"] == target]
        heads = list(dict.fromkeys((r["method"], r["intermediate"]) for r in rows))
        gain = {(r["method"], r["intermediate"], r["language"]): r["gain"] for r in rows}
        body += [f"**{target}**", "", _md(["language", *(f"{i} [{m}]" for m, i in heads)], [
            [lang, *(_f(gain.get((m, i, lang)), sign=True) for m, i in heads)]
            for lang in dict.fromkeys(r["language"] for r in rows)]), ""]
    return body


def _retrieval_section(retrieval: list[dict]) -> list[str]:
    body = []
    for target in dict.fromkeys(r["target"] for r in retrieval):
        rows = [r for r in retrieval if r["target"] == target]
        langs = list(dict.fromkeys(lang for r in rows for lang in r["scores"]))
        body += [f"**{target}**", "", _md(["model", "n", "zero-shot", "gain", *langs], [
            [r["model"], str(r["n"]), _f(r["zero_shot"]), _f(r["gain"], sign=True),
             *(_f(r["scores"].get(lang)) for lang in langs)] for r in rows]), ""]
    return body


def _not_learned_section(not_learned: list[dict]) -> list[str]:
    return [_md(["id", "English dev", "baseline", "loss start -> end", "reason"], [
        [r["id"], _f(r["dev"]), _f(r["level"]), f"{_loss(r['loss_start'])} -> {_loss(r['loss_end'])}",
         _escape(r["reason"])] for r in not_learned]), ""] if not_learned else []


def _costs_section(costs: list[dict]) -> list[str]:
    return [_md(["method", "composition", "n", "trainable params", "trainable %", "weights MB", "train s",
                 "peak RSS MB"], [
        [str(r["method"]), str(r["composition"]), str(r["n"]), _count(r["trainable_parameters"]),
         _f(r["trainable_percent"]), _f(r["weights_mb"]), _f(r["train_seconds"]), _f(r["peak_rss_mb"])]
        for r in costs]), ""] if costs else []
