"""The report's sections for issue 16's grid axes: sequential chains, intermediate data size, robustness
(perturbed evaluations), domain shift (local data files), language groups and the evaluations' other metrics.

Each section is built from fields only the new records hold (`chain`, `intermediate_size`, `perturbed`, `domain`,
`secondary`) or from the per-language gains every report computes (language groups), so a grid without them gets
empty tables and no section. The sequential and data-size cells (`Setup.SEQUENTIAL`, `Setup.SIZE`) and their
intermediate cells are kept out of every other section (`main_cells`): they would otherwise show as extra best-of
columns. Language groups come from `stepstone.languages`, read at call time. Tables keep raw numbers (one dict per
row); the sections format them.
"""
from __future__ import annotations

import re
from pathlib import Path

from .. import languages
from .cells import CellRecord, Kind, Setup, Status
from .report import FLAG, _f, _groups, _md, _mean, _not_learned, _per_language, _save, _stats

AXES = (Setup.SEQUENTIAL, Setup.SIZE)  # setups with a section of their own, kept out of the others
SIZE_GROUPING = "tier"  # the data-size section's language groups
ROBUSTNESS, DOMAIN = "Robustness", "Domain shift"


def main_cells(cells: list[CellRecord]) -> list[CellRecord]:
    """The cells every section before issue 16 reports: all but the sequential and data-size target cells and the
    intermediate cells that trained their adapters (a chain, or an intermediate size a stack-size cell uses)."""
    sized = {(c.method, c.intermediate, c.intermediate_size, c.backbone) for c in cells if c.composition is Setup.SIZE}

    def axis(c: CellRecord) -> bool:
        if c.composition in AXES:
            return True
        return c.kind is Kind.INTERMEDIATE and (len(c.chain or ()) > 1 or c.intermediate_size is not None and (
            c.method, c.task, c.intermediate_size, c.backbone) in sized)
    return [c for c in cells if not axis(c)]


def _train_language(cell: CellRecord) -> str:
    return cell.train_language or "en"


def _zs(scores: dict, cell: CellRecord, langs=None) -> float | None:
    """Zero-shot mean of `scores` (language -> number): the languages other than the cell's training language
    (and, given `langs`, only those)."""
    return _mean(v for lang, v in scores.items() if lang != _train_language(cell) and (langs is None or lang in langs)
                 and isinstance(v, (int, float)) and not isinstance(v, bool))


def _grouped(gains: dict[str, float], by: str) -> list[tuple[str, float, list[str]]]:
    """(group, mean gain, its languages) under grouping `by`, in the table's order."""
    means = languages.group_scores(gains, by)
    return [(group, mean, [lang for lang in gains if languages.group_of(lang, by) == group])
            for group, mean in means.items()]


def axes_tables(cells: list[CellRecord], tables: dict, chosen: dict) -> dict[str, list[dict]]:
    """The new sections' tables; `tables` and `chosen` are the report's (headline, gains) over `main_cells`."""
    headline = tables["headline"]
    sizes, size_groups, size_languages = _sizes(cells, headline, chosen)
    robustness, robustness_languages = _robustness(headline, chosen)
    return {"other_metrics": _other_metrics(headline, chosen),
            "gain_by_group": _gain_by_group(tables["gain_by_language"], headline, chosen),
            "sequential": _sequential(cells, headline), "intermediate_size": sizes,
            "intermediate_size_groups": size_groups, "intermediate_size_languages": size_languages,
            "robustness": robustness,
            "robustness_by_language": robustness_languages, "domain": _domain(headline, chosen)}


def _entry(row: dict) -> dict:
    """The keys that name a headline entry, for the rows of tables derived from it."""
    return {k: row[k] for k in ("target", "column", "method", "composition", "intermediate")}


def _other_metrics(headline: list[dict], chosen: dict) -> list[dict]:
    """Per headline entry and secondary metric: its zero-shot mean ± std over the seeds, English apart."""
    rows = []
    for r in headline:
        members = [c for c in chosen[r["target"], r["column"]] if c.secondary]
        for name in dict.fromkeys(n for c in members for n in c.secondary):
            values = [v for v in (_zs(c.secondary[name], c) for c in members if name in c.secondary) if v is not None]
            if values:
                mean, std, n = _stats(values)
                rows.append({**_entry(r), "metric": r["metric"], "main": r["mean"], "name": name, "mean": mean,
                             "std": std, "n": n, "english": _mean(c.secondary[name].get("en")
                                                                  for c in members if name in c.secondary)})
    return rows


def _gain_by_group(gains: list[dict], headline: list[dict], chosen: dict) -> list[dict]:
    """Per grouping (tier, family, script), target, method and best stack: the mean per-language gain per group,
    over the zero-shot languages (the training language apart)."""
    train = {(r["target"], r["method"]): _train_language(chosen[r["target"], r["column"]][0]) for r in headline}
    entries = list(dict.fromkeys((r["target"], r["method"], r["intermediate"]) for r in gains))
    rows = []
    try:
        for by in languages.GROUPINGS:
            for target, method, inter in entries:
                mine = {r["language"]: r["gain"] for r in gains if (r["target"], r["method"], r["intermediate"])
                        == (target, method, inter) and r["language"] != train.get((target, method), "en")}
                rows += [{"grouping": by, "target": target, "method": method, "intermediate": inter, "group": group,
                          "gain": mean, "languages": langs} for group, mean, langs in _grouped(mine, by)]
    except NotImplementedError:  # the languages table is not there yet (its interface stub): no groups to show
        return []
    return rows


def _sequential(cells: list[CellRecord], headline: list[dict]) -> list[dict]:
    """Per target and method with sequential cells: each chain, the multitask cell (joint), the Stack cell of each
    chain member (single-task) and the target adapter alone (`none`), each with its gain over `none`."""
    key = (lambda c: (c.target, c.method, c.composition, c.intermediate))
    groups = _groups(cells, (Kind.TARGET,), key)
    base = {(r["target"], r["method"]): r["mean"] for r in headline if r["composition"] is Setup.NONE}
    plain = main_cells(cells)
    # a chain's first task the grid does not stack on its own is trained as a plain intermediate cell (no `chain`):
    # not one of the grid's intermediate tasks, so not one the multitask adapter trained on
    stacked = {(c.method, c.intermediate) for c in cells if c.composition is Setup.STACK}
    chain_only = {m: {c.chain[0] for c in cells if c.composition is Setup.SEQUENTIAL and c.method == m and c.chain
                      and (m, c.chain[0]) not in stacked} for m in {c.method for c in cells}}
    rows = []
    for target, method in sorted({k[:2] for k in groups if k[2] is Setup.SEQUENTIAL}, key=lambda k: tuple(map(str, k))):
        def row(setup: str, label, trained_on, members):
            mean, std, n = _stats([_zs(c.scores, c) for c in members])
            gain = base.get((target, method))
            return {"target": target, "method": method, "setup": setup, "intermediate": label,
                    "trained_on": trained_on, "mean": mean, "std": std, "n": n,
                    "gain": None if gain is None or setup == "none" else mean - gain}
        chains = sorted(((k[3], g) for k, g in groups.items() if k[:3] == (target, method, Setup.SEQUENTIAL)),
                        key=lambda kv: str(kv[0]))
        mine = [row("sequential", label, list(g[0].chain or str(label).split("-then-")), g) for label, g in chains]
        joint = [g for k, g in groups.items() if k[:3] == (target, method, Setup.MULTITASK)]
        tasks = sorted({c.task for c in plain if c.kind is Kind.INTERMEDIATE and c.method == method
                        and c.task not in (None, "multitask") and c.task not in chain_only[method]})
        mine += [row("multitask", "multitask", tasks or None, g) for g in joint]
        for task in dict.fromkeys(t for r in mine if r["setup"] == "sequential" for t in r["trained_on"]):
            stack = groups.get((target, method, Setup.STACK, task))
            mine += [row("stack", task, [task], stack)] if stack else []
        none = groups.get((target, method, Setup.NONE, None))
        rows += mine + ([row("none", None, [], none)] if none else [])
    return rows


def _sizes(cells: list[CellRecord], headline: list[dict], chosen: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """Per target, method and intermediate task with stack-size cells: the zero-shot gain over `none` at each size,
    ascending, then the ordinary Stack cell as the full-size point ('all'); the gain per language group; and per
    language (where every language is of one tier, as in ../shared, the groups say nothing its languages do not)."""
    sized = _groups(cells, (Kind.TARGET,), lambda c: (c.target, c.method, c.intermediate, c.intermediate_size))
    sized = {k: g for k, g in sized.items() if g[0].composition is Setup.SIZE}
    stacks = _groups([c for c in cells if c.composition is Setup.STACK], (Kind.TARGET,),
                     lambda c: (c.target, c.method, c.intermediate))
    none = {(r["target"], r["method"]): r for r in headline if r["composition"] is Setup.NONE}
    full = {(c.method, c.task): c.examples for c in main_cells(cells)
            if c.kind is Kind.INTERMEDIATE and c.status is Status.OK and c.examples is not None}
    # the intermediate adapters that did not learn, by (method, task, size); size None: the ordinary (full) one
    run = {(m, i, s) for _, m, i, s in sized}
    dead = {(c.method, c.task, c.intermediate_size if (c.method, c.task, c.intermediate_size) in run else None)
            for c in cells if c.kind is Kind.INTERMEDIATE and not c.chain and _not_learned(c)}
    rows, group_rows, language_rows = [], [], []
    for target, method, inter in sorted({k[:3] for k in sized}, key=lambda k: tuple(map(str, k))):
        points = [(size, str(size), size, sized[target, method, inter, size])
                  for size in sorted(s for t, m, i, s in sized if (t, m, i) == (target, method, inter))]
        if (target, method, inter) in stacks:
            points.append((None, "all", full.get((method, inter)), stacks[target, method, inter]))
        base = none.get((target, method))
        bare = _per_language(chosen[target, base["column"]]) if base else {}
        for size, label, examples, members in points:
            mean, std, n = _stats([_zs(c.scores, c) for c in members])
            where = {"target": target, "method": method, "intermediate": inter, "size": size, "label": label}
            rows.append({**where, "examples": examples, "n": n, "mean": mean, "std": std,
                         "gain": None if base is None else mean - base["mean"],
                         "intermediate_not_learned": (method, inter, size) in dead})
            train = _train_language(members[0])
            gains = {lang: v[0] - bare[lang][0] for lang, v in _per_language(members).items()
                     if lang in bare and lang != train}
            language_rows += [{**where, "language": lang, "gain": gain} for lang, gain in gains.items()]
            try:
                group_rows += [{**where, "grouping": SIZE_GROUPING, "group": group, "gain": gain, "languages": langs}
                               for group, gain, langs in (_grouped(gains, SIZE_GROUPING) if gains else ())]
            except NotImplementedError:  # the languages table is not there yet (its interface stub)
                pass
    return rows, group_rows, language_rows


def _robustness(headline: list[dict], chosen: dict) -> tuple[list[dict], list[dict]]:
    """Per headline entry and perturbation: clean and perturbed zero-shot means over the same languages and seeds,
    and the drop (clean - perturbed); and the same per language."""
    rows, by_language = [], []
    for r in headline:
        members = [c for c in chosen[r["target"], r["column"]] if c.perturbed]
        for label in dict.fromkeys(p for c in members for p in c.perturbed):
            mine = [c for c in members if label in c.perturbed]
            clean = [_zs(c.scores, c, c.perturbed[label]) for c in mine]
            perturbed = [_zs(c.perturbed[label], c, c.scores) for c in mine]
            pairs = [(a, b) for a, b in zip(clean, perturbed) if a is not None and b is not None]
            if pairs:
                rows.append({**_entry(r), "label": label, "n": len(pairs), "clean": _mean(a for a, _ in pairs),
                             "perturbed": _mean(b for _, b in pairs),
                             "drop": _mean(a for a, _ in pairs) - _mean(b for _, b in pairs)})
            langs = dict.fromkeys(lang for c in mine for lang in c.perturbed[label] if lang in c.scores)
            for lang in sorted(langs, key=lambda lang: (lang != "en", lang)):
                both = [(c.scores[lang], c.perturbed[label][lang]) for c in mine
                        if lang in c.scores and lang in c.perturbed[label]]
                by_language.append({**_entry(r), "label": label, "language": lang, "n": len(both),
                                    "clean": _mean(a for a, _ in both), "perturbed": _mean(b for _, b in both),
                                    "drop": _mean(a - b for a, b in both)})
    return rows, by_language


def _domain(headline: list[dict], chosen: dict) -> list[dict]:
    """Per headline entry and data file: the in-domain zero-shot mean and English score, the file's score and its
    drop against the in-domain zero-shot mean (in-domain - file), over the seeds that scored the file."""
    rows = []
    for r in headline:
        members = [c for c in chosen[r["target"], r["column"]] if c.domain]
        for label in dict.fromkeys(f for c in members for f in c.domain):
            mine = [c for c in members if label in c.domain]
            in_domain, score = _mean(_zs(c.scores, c) for c in mine), _mean(c.domain[label] for c in mine)
            english = _mean(c.scores.get(_train_language(c)) for c in mine)
            rows.append({**_entry(r), "file": label, "n": len(mine), "in_domain": in_domain, "english": english,
                         "score": score, "drop": None if in_domain is None else in_domain - score,
                         "drop_english": None if english is None else english - score})
    return rows


# ---- sections
def headline_sections(tables: dict):
    """(title, lines) of the sections that sit beside the headline."""
    yield "Other metrics", _other_metrics_section(tables["other_metrics"])


def sections(tables: dict, plot_dir: Path | None, written: list[Path]):
    """(title, lines) of the new sections after the rank section; plots into `plot_dir` (None: none)."""
    yield "Gain by language group", _gain_by_group_section(tables["gain_by_group"])
    yield "Sequential vs joint vs single-task", _sequential_section(tables["sequential"])
    yield "Intermediate data size", _size_section(tables["intermediate_size"], tables["intermediate_size_groups"],
                                                  tables["intermediate_size_languages"], plot_dir, written)
    yield ROBUSTNESS, _robustness_section(tables["robustness"])
    yield DOMAIN, _domain_section(tables["domain"])


def _pm(mean, std) -> str:
    return f"{_f(mean)} ± {_f(std)}"


def _other_metrics_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = ["Zero-shot mean ± std over seeds of each evaluation's other metrics, beside its main one, for the "
            "headline entries.", ""]
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        names = list(dict.fromkeys(r["name"] for r in mine))
        value = {(r["column"], r["name"]): r for r in mine}
        main = {r["column"]: r["main"] for r in mine}
        body += [f"**{target}**", "", _md(["column", f"{mine[0]['metric']} (main)", *names], [
            [column, _f(main[column]), *(_pm(value[column, n]["mean"], value[column, n]["std"])
                                         if (column, n) in value else "–" for n in names)]
            for column in dict.fromkeys(r["column"] for r in mine)]), ""]
    return body


def _gain_by_group_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = ["Mean gain of the best stack over `none` per language group (the zero-shot languages of *Gain of the "
            "best stack by language*, the training language apart; `stepstone.languages`); (k): the number of "
            "languages in the group.", ""]
    for by in dict.fromkeys(r["grouping"] for r in rows):
        mine = [r for r in rows if r["grouping"] == by]
        heads = list(dict.fromkeys((r["target"], r["method"], r["intermediate"]) for r in mine))
        gain = {(r["target"], r["method"], r["intermediate"], r["group"]): r for r in mine}
        body += [f"**by {by}**", "", _md([by, *(f"{t}: {i} [{m}]" for t, m, i in heads)], [
            [group, *(f"{_f(gain[h + (group,)]['gain'], sign=True)} ({len(gain[h + (group,)]['languages'])})"
                      if h + (group,) in gain else "–" for h in heads)]
            for group in dict.fromkeys(r["group"] for r in mine)]), ""]
    return body


SEQUENTIAL_SETUP = {"sequential": "sequential", "multitask": "joint (multitask)", "stack": "single-task (stack)",
                    "none": "target only (none)"}


def _trained_on(row: dict) -> str:
    if row["setup"] == "sequential":
        return " → ".join(row["trained_on"])
    if row["setup"] == "multitask":
        return ", ".join(row["trained_on"]) if row["trained_on"] else "every intermediate task"
    return ", ".join(row["trained_on"]) or "–"


def _sequential_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = ["Per target and method: each chain (one adapter trained on its tasks one after another, in the order "
            "shown, then stacked under the target adapter), the multitask adapter (joint: trained on every "
            "intermediate task of the grid at once), the Stack of each chain member (single-task) and the target "
            "adapter alone; zero-shot mean ± std (n seeds); gain = mean minus that of `none`.", ""]
    for target, method in dict.fromkeys((r["target"], r["method"]) for r in rows):
        mine = [r for r in rows if (r["target"], r["method"]) == (target, method)]
        body += [f"**{target} [{method}]**", "", _md(["setup", "trained on", "zero-shot", "gain vs none"], [
            [SEQUENTIAL_SETUP[r["setup"]], _trained_on(r), f"{_pm(r['mean'], r['std'])} (n={r['n']})",
             _f(r["gain"], sign=True)] for r in mine]), ""]
    return body


def _size_section(rows: list[dict], group_rows: list[dict], language_rows: list[dict], plot_dir: Path | None,
                  written: list[Path]) -> list[str]:
    if not rows:
        return []
    body = [f"Per target, method and intermediate task: zero-shot gain over `none` with the intermediate adapter "
            f"trained on N examples (ascending), then on all of them (the ordinary Stack cell: *all*); overall and "
            f"per language group ({SIZE_GROUPING}, the zero-shot languages; (k): languages in the group); {FLAG}: that "
            f"intermediate adapter did not learn. Then the same gains per language, the languages ordered by the "
            f"size of their CC-100 data (XLM-R's pretraining corpus; `stepstone.languages`), largest first.", ""]
    for target, method, inter in dict.fromkeys((r["target"], r["method"], r["intermediate"]) for r in rows):
        where = (target, method, inter)
        mine = [r for r in rows if (r["target"], r["method"], r["intermediate"]) == where]
        groups = [g for g in group_rows if (g["target"], g["method"], g["intermediate"]) == where]
        names = list(dict.fromkeys(g["group"] for g in groups))
        gain = {(g["label"], g["group"]): g for g in groups}
        body += [f"**{target} [{method}], intermediate {inter}**", "", _md(
            ["size", "n", "zero-shot", "gain", *(f"gain {name}" for name in names)],
            [[_size_label(r) + (f" {FLAG}" if r["intermediate_not_learned"] else ""), str(r["n"]),
              _pm(r["mean"], r["std"]), _f(r["gain"], sign=True),
              *(f"{_f(gain[r['label'], n]['gain'], sign=True)} ({len(gain[r['label'], n]['languages'])})"
                if (r["label"], n) in gain else "–" for n in names)] for r in mine]), ""]
        body += _size_languages(mine, [g for g in language_rows
                                       if (g["target"], g["method"], g["intermediate"]) == where])
        if plot_dir is not None and any(r["gain"] is not None for r in mine):
            name = "size_" + "_".join(re.sub(r"[^A-Za-z0-9_.-]", "_", str(p)) for p in where) + ".png"
            written.append(_save(_size_figure(where, mine, groups), plot_dir / name))
            body += [f"![{target} {method} {inter}: gain vs intermediate data size]({name})", ""]
    return body


def _size_languages(rows: list[dict], language_rows: list[dict]) -> list[str]:
    """The per-language gains of one size table: a row per size, a column per language (its CC-100 GiB)."""
    if not language_rows:
        return []

    def gib(lang: str) -> float | None:
        known = languages.language(lang)
        return known.cc100_gib if known is not None else None

    langs = sorted(dict.fromkeys(g["language"] for g in language_rows),
                   key=lambda lang: (gib(lang) is None, -(gib(lang) or 0), lang))
    gain = {(g["label"], g["language"]): g["gain"] for g in language_rows}
    return [_md(["size", *(lang if gib(lang) is None else f"{lang} ({gib(lang):g} GiB)" for lang in langs)],
                [[_size_label(r), *(_f(gain.get((r["label"], lang)), sign=True) for lang in langs)] for r in rows]),
            ""]


def _size_label(row: dict) -> str:
    """A size row's name: N, or 'all (N)' for the ordinary adapter where its examples are known."""
    return row["label"] if row["examples"] is None or row["size"] is not None else f"all ({row['examples']})"


def _size_figure(where: tuple, rows: list[dict], groups: list[dict]):
    """Zero-shot gain (y) vs the intermediate adapter's training examples (x, log), a line for all languages and
    one per language group; the full-size point sits at its recorded size, else at twice the largest N."""
    from matplotlib.figure import Figure
    sizes = [r["size"] for r in rows if r["size"] is not None]
    x = {r["label"]: r["size"] if r["size"] is not None else r["examples"] or 2 * max(sizes) for r in rows}
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    series = {"all languages": {r["label"]: r["gain"] for r in rows if r["gain"] is not None}}
    for g in groups:
        series.setdefault(g["group"], {})[g["label"]] = g["gain"]
    for k, (name, values) in enumerate(series.items()):
        labels = [r["label"] for r in rows if r["label"] in values]
        ax.plot([x[lab] for lab in labels], [values[lab] for lab in labels], marker="o", label=name,
                linewidth=2.0 if k == 0 else 1.2, color="black" if k == 0 else None)
    ax.set_xscale("log")
    ax.set_xticks([x[r["label"]] for r in rows], [r["label"] for r in rows])
    ax.minorticks_off()
    target, method, inter = where
    ax.set(title=f"{target} [{method}]: Stack of {inter}", xlabel=f"{inter} training examples (log scale)",
           ylabel="zero-shot gain over none (points)")
    ax.legend(fontsize=7, title=f"language group ({SIZE_GROUPING})", title_fontsize=7)
    return fig


def _robustness_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = ["Per target and headline entry: zero-shot mean on the clean examples and on each perturbation of the "
            "same examples (same languages, same seeds), and the drop = clean - perturbed (positive: the "
            "perturbation costs points). Per language: `Report.tables['robustness_by_language']`.", ""]
    return body + _per_file_tables(rows, "label", lambda r: [_f(r["clean"])], ["clean"], "perturbed",
                                   {"drop": "drop {}"})


def _domain_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = ["Per target and headline entry: the in-domain zero-shot mean and English (training-language) score, "
            "each data file's score (the same metric) and its drops: in-domain zero-shot - file score, and English - "
            "file score.", ""]
    return body + _per_file_tables(rows, "file", lambda r: [_f(r["in_domain"]), _f(r["english"])],
                                   ["in-domain zero-shot", "English"], "score",
                                   {"drop": "drop {}", "drop_english": "drop vs en {}"})


def _per_file_tables(rows: list[dict], key: str, lead, heads: list[str], value: str, drops: dict) -> list[str]:
    """Per target: a row per headline column, its leading numbers, then per `key` (perturbation or file) its
    `value` and drops (`drops`: row key -> heading, '{}' the perturbation or file)."""
    body = []
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        labels = list(dict.fromkeys(r[key] for r in mine))
        cell = {(r["column"], r[key]): r for r in mine}
        table = []
        for column in dict.fromkeys(r["column"] for r in mine):
            some = next(r for r in mine if r["column"] == column)
            table.append([column, *lead(some), *(x for label in labels for x in (
                [_f(cell[column, label][value]), *(_f(cell[column, label][d], sign=True) for d in drops)]
                if (column, label) in cell else ["–"] * (1 + len(drops))))])
        body += [f"**{target}**", "", _md(["column", *heads, *(x for label in labels for x in (
            str(label), *(h.format(label) for h in drops.values())))], table), ""]
    return body
