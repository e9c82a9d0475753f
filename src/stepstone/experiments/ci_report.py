"""The report's confidence intervals (issue 18): every zero-shot score and gain of the cells that recorded their
per-example statistics (`CellRecord.statistics`), by the paired bootstrap of `stats`.

A setup's cells (its seeds) are pooled: per language, the metric of each seed's resampled statistics, averaged
over the seeds, then over the zero-shot languages. A gain B - A resamples the examples once for both setups (a
target's cells score the same examples), so what they share cancels. The interval is the 2.5th-97.5th percentile
of SAMPLES resamples (seed SEED, so a report is the same every time); a gain is significant (`*`) where its
interval excludes 0. The headline's gains also get the interval that resamples each setup's seeds too
(`stats.resample(seeds=True)`, where both setups have two or more seeds). Cells without statistics (records from
before issue 18) give no interval: the tables leave those entries out, and a grid without any statistics gets no
section.

Tables (raw numbers, one dict per row): `learning` (English dev against the majority / chance level, per target),
`headline_ci`, `stack_ci` (every intermediate task), `stack_ci_by_language`, `size_ci` (by the language groups of
`PRETRAINING`), `robustness_ci` (the drop under each perturbation with and without the best intermediate task).
"""
from __future__ import annotations

from typing import Sequence

from .. import languages
from . import stats
from .cells import CellRecord, Kind, Setup, Status
from .report import FLAG, _f, _groups, _md, _mean

SAMPLES, LEVEL, SEED = 1000, 0.95, 0
# Resource groups by XLM-R's pretraining data (CC-100 GiB, languages.tsv): every language of ../shared is Joshi
# class 4-5 ("high" tier), so the tier cannot split them; the CC-100 size can.
PRETRAINING = ((50.0, "CC-100 >= 50 GiB"), (0.0, "CC-100 < 50 GiB"))
BASELINE = {"bottleneck": "none", "lora": "none"}


def pretraining_group(lang: str) -> str | None:
    """The `PRETRAINING` group of a language; None where the languages table has no CC-100 size for it (toy
    languages, a code it does not hold)."""
    row = languages.language(lang)
    size = row.cc100_gib if row is not None else None
    return None if size is None else next(name for least, name in PRETRAINING if size >= least)


def _train_language(cell: CellRecord) -> str:
    return cell.train_language or "en"


def pooled(cells: Sequence[CellRecord], label: str | None = None,
           langs: Sequence[str] | None = None) -> tuple[str, dict] | None:
    """(statistic, language -> one [examples, k] array per cell) over the cells' zero-shot languages (only `langs`
    where given), clean or under perturbation `label`; None where a cell holds no such statistics or the cells
    disagree on what they hold."""
    kinds = {(c.statistics or {}).get("statistic") for c in cells}
    if not cells or None in kinds or len(kinds) != 1:
        return None
    by_language: dict[str, list] = {}
    for c in cells:
        block = c.statistics.get("scores") if label is None else (c.statistics.get("perturbed") or {}).get(label)
        if not isinstance(block, dict):
            return None
        for lang, text in block.items():
            if lang != _train_language(c) and (langs is None or lang in langs):
                by_language.setdefault(lang, []).append(stats.decode(text, f"cell {c.id}, statistics of '{lang}'"))
    if not by_language or any(len(v) != len(cells) for v in by_language.values()):
        return None
    return kinds.pop(), by_language


def _interval(setups: list[tuple[str, dict] | None], combine, seeds: bool = False) -> stats.Gain | None:
    """`combine(rows)` of the setups' resampled scores (rows [setups, ...]) with its interval (`seeds`: the seeds
    resampled too); None where a setup has no statistics or they do not pair (other languages, other examples,
    other statistics)."""
    if any(s is None for s in setups) or len({s[0] for s in setups}) != 1:
        return None
    try:
        point, draws = stats.resample([s[1] for s in setups], stats.METRICS[setups[0][0]], samples=SAMPLES, seed=SEED,
                                      seeds=seeds)
    except ValueError:
        return None
    return stats.interval(combine(point), combine(draws), LEVEL)


def gain(a: Sequence[CellRecord], b: Sequence[CellRecord], langs=None, seeds: bool = False) -> stats.Gain | None:
    return _interval([pooled(a, langs=langs), pooled(b, langs=langs)], lambda r: r[1] - r[0], seeds)


def score(a: Sequence[CellRecord], langs=None) -> stats.Gain | None:
    return _interval([pooled(a, langs=langs)], lambda r: r[0])


def _common(*groups: Sequence[CellRecord]) -> list[str]:
    """The zero-shot languages every cell of every group scored."""
    sets = [set(c.scores) - {_train_language(c)} for g in groups for c in g]
    return sorted(set.intersection(*sets)) if sets else []


def ci_tables(cells: list[CellRecord], tables: dict, chosen: dict) -> dict[str, list[dict]]:
    headline = tables["headline"]
    none = {(r["target"], r["method"]): chosen[r["target"], r["column"]] for r in headline
            if r["composition"] is Setup.NONE}
    return {"learning": _learning(cells), "headline_ci": _headline(headline, chosen, none),
            **_stacks(cells, none), "size_ci": _sizes(cells, none),
            "robustness_ci": _robustness(headline, chosen, none)}


def _learning(cells: list[CellRecord]) -> list[dict]:
    """Per target and method: the English dev score of its target-only cells (mean over seeds) beside the
    majority-class and chance levels of that dev set (stepstone.health), and how many of the cells learned (of
    those with a verdict: records from before issue 13 have none, and their targets no row)."""
    groups = _groups([c for c in cells if c.composition in (Setup.NONE, Setup.FULL)], (Kind.TARGET,),
                     lambda c: (c.target, c.method), scored=False)
    rows = []
    for (target, method), members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        learned = [c.learning for c in members if c.learning]
        if not learned:
            continue
        rows.append({"target": target, "method": method, "metric": next((x.get("metric") for x in learned
                                                                         if x.get("metric")), None),
                     "dev": _mean(c.dev for c in members), "majority": _mean(x.get("majority") for x in learned),
                     "chance": _mean(x.get("chance") for x in learned), "n": len(learned),
                     "learned": sum(x.get("verdict") == "learned" for x in learned)})
    return rows


def _headline(headline: list[dict], chosen: dict, none: dict) -> list[dict]:
    """Every headline entry: its zero-shot score with its interval, and its gain over the same method's `none`
    (full fine-tuning: over the bottleneck adapter's `none`, the parameter-efficient baseline) with its interval,
    and, where both have at least two seeds, with the interval that resamples the seeds too (`gain_seeds`)."""
    rows = []
    for r in headline:
        members = chosen[r["target"], r["column"]]
        base_method = "bottleneck" if r["method"] == "full" else r["method"]
        base = none.get((r["target"], base_method))
        own = score(members)
        if own is None:
            continue
        versus = None if base is None or base is members else gain(base, members)
        seeded = gain(base, members, seeds=True) if versus is not None and min(len(base), len(members)) > 1 else None
        rows.append({**{k: r[k] for k in ("target", "column", "method", "composition", "intermediate", "metric")},
                     "n": len(members), "score": own.to_dict(), "baseline": f"none [{base_method}]",
                     "gain": None if versus is None else versus.to_dict(),
                     "gain_seeds": None if seeded is None else seeded.to_dict()})
    return rows


def _stacks(cells: list[CellRecord], none: dict) -> dict[str, list[dict]]:
    """Every Stack(intermediate) cell group against its target's `none` (same method): the zero-shot gain and the
    gain in each language, each with its interval (Phang et al.'s question, answered per language)."""
    groups = _groups([c for c in cells if c.composition is Setup.STACK], (Kind.TARGET,),
                     lambda c: (c.target, c.method, c.intermediate))
    rows, by_language = [], []
    for (target, method, inter), members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        base = none.get((target, method))
        overall = gain(base, members) if base else None
        if overall is None:
            continue
        where = {"target": target, "method": method, "intermediate": inter}
        rows.append({**where, "n": len(members), "n_none": len(base), "gain": overall.to_dict()})
        for lang in _common(base, members):
            one = gain(base, members, langs=[lang])
            if one is not None:
                by_language.append({**where, "language": lang, "gain": one.to_dict()})
    return {"stack_ci": rows, "stack_ci_by_language": by_language}


def _sizes(cells: list[CellRecord], none: dict) -> list[dict]:
    """Per target, method and sized intermediate task: the gain over `none` at each size and at the ordinary
    stack's ('all'), over all zero-shot languages and per `PRETRAINING` group, each with its interval."""
    sized = _groups([c for c in cells if c.composition is Setup.SIZE], (Kind.TARGET,),
                    lambda c: (c.target, c.method, c.intermediate, c.intermediate_size))
    stacks = _groups([c for c in cells if c.composition is Setup.STACK], (Kind.TARGET,),
                     lambda c: (c.target, c.method, c.intermediate))
    from .axes_report import main_cells  # the ordinary intermediate adapters: not the sized ones

    sizes = {(c.method, c.task): c.examples for c in main_cells(cells) if c.kind is Kind.INTERMEDIATE
             and c.status is Status.OK and c.examples is not None}
    rows = []
    for target, method, inter in sorted({k[:3] for k in sized}, key=lambda k: tuple(map(str, k))):
        base = none.get((target, method))
        if base is None:
            continue
        points = [(str(size), size, sized[target, method, inter, size])
                  for size in sorted(s for t, m, i, s in sized if (t, m, i) == (target, method, inter))]
        if (target, method, inter) in stacks:
            points.append(("all", sizes.get((method, inter)), stacks[target, method, inter]))
        for label, examples, members in points:
            langs = _common(base, members)
            groups = {"all languages": langs}
            for lang in langs:
                group = pretraining_group(lang)
                if group is not None:
                    groups.setdefault(group, []).append(lang)
            for group, chosen in groups.items():
                found = gain(base, members, langs=chosen)
                if found is not None:
                    rows.append({"target": target, "method": method, "intermediate": inter, "size": label,
                                 "examples": examples, "n": len(members), "group": group, "languages": chosen,
                                 "gain": found.to_dict()})
    return rows


def _changed(members: Sequence[CellRecord], label: str) -> list[str]:
    """The zero-shot languages whose scores the perturbation changed in some cell (a code-switching lexicon covers
    some languages only: the others score as clean and would dilute the drop)."""
    return [lang for lang in _common(members)
            if any(lang in (c.perturbed or {}).get(label, {}) and c.perturbed[label][lang] != c.scores[lang]
                   for c in members)]


def _robustness(headline: list[dict], chosen: dict, none: dict) -> list[dict]:
    """Per target, method and perturbation: the drop (clean - perturbed) of `none` and of the best stack, over the
    languages the perturbation changed, each with its interval, and how much smaller the best stack's drop is."""
    rows = []
    for r in headline:
        every_base = none.get((r["target"], r["method"]))
        if r["composition"] is not Setup.STACK or every_base is None:
            continue
        every_stack = chosen[r["target"], r["column"]]
        labels = dict.fromkeys(p for c in [*every_base, *every_stack] for p in (c.perturbed or {}))
        for label in labels:
            # the seeds evaluated under it (a grid's perturb_seeds), clean and perturbed alike
            base, stack = ([c for c in cells if label in (c.perturbed or {})] for cells in (every_base, every_stack))
            if not base or not stack:
                continue
            shared = set(_common(base, stack))
            langs = [lang for lang in _changed([*base, *stack], label) if lang in shared]
            setups = [pooled(base, langs=langs), pooled(base, label, langs),
                      pooled(stack, langs=langs), pooled(stack, label, langs)]
            if not langs:
                continue
            drop_none = _interval(setups[:2], lambda x: x[0] - x[1])
            drop_stack = _interval(setups[2:], lambda x: x[0] - x[1])
            less = _interval(setups, lambda x: (x[0] - x[1]) - (x[2] - x[3]))
            if None in (drop_none, drop_stack, less):
                continue
            rows.append({"target": r["target"], "method": r["method"], "intermediate": r["intermediate"],
                         "label": label, "languages": langs, "seeds": (len(base), len(stack)),
                         "drop_none": drop_none.to_dict(),
                         "drop_stack": drop_stack.to_dict(), "smaller_drop": less.to_dict()})
    return rows


# ---- sections
def _ci(block: dict | None, sign: bool = False, star: bool = False) -> str:
    """'47.7 [46.1, 49.2]' (a score) or '+1.2 [-0.3, +2.7]*' (a gain; * = significant)."""
    if block is None:
        return "–"
    text = f"{_f(block['gain'], sign)} [{_f(block['low'], sign)}, {_f(block['high'], sign)}]"
    return text + ("*" if star and block["significant"] else "")


def sections(tables: dict):
    """(title, markdown lines) of the interval sections, in order."""
    yield "Does each target learn?", _learning_section(tables.get("learning", []))
    yield "Headline with 95% confidence intervals", _headline_section(tables.get("headline_ci", []))
    yield "Which intermediate tasks help (95% CIs)", _stack_section(tables.get("stack_ci", []),
                                                                    tables.get("stack_ci_by_language", []))
    yield "Intermediate data size (95% CIs)", _size_section(tables.get("size_ci", []))
    yield "Robustness with and without the best intermediate task (95% CIs)", \
        _robustness_section(tables.get("robustness_ci", []))


INTERVALS = (f"Intervals: paired bootstrap, {SAMPLES} resamples of the evaluation examples (each language's "
             "examples drawn with replacement, the same draw for both setups and all seeds), seeds pooled; 95% "
             "percentile interval; * = the interval excludes 0. They measure what the choice of evaluation examples "
             "leaves uncertain, not the spread over training seeds (± std in the headline above): a gain measured at "
             "one seed is significant for that seed's training run.")


def _learning_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    return ["English dev score of the target-only runs (mean over seeds) beside the score of always predicting the "
            "dev set's majority class and, for classification, of guessing (stepstone.health).", "",
            _md(["target", "method", "metric", "English dev", "majority class", "chance", "learned"], [
                [r["target"], str(r["method"]), str(r["metric"]), _f(r["dev"]), _f(r["majority"]), _f(r["chance"]),
                 f"{r['learned']}/{r['n']}" + ("" if r["learned"] == r["n"] else f" {FLAG}")] for r in rows]), ""]


def _headline_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = [INTERVALS + " *Seeds resampled too*: the same, each resample also drawing each setup's seeds with "
            "replacement (a two-level bootstrap; where both setups have two or more seeds): a gain significant there "
            "holds across training runs, not only for these ones.", ""]
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        body += [f"**{target}** ({mine[0]['metric']})", "", _md(
            ["setup", "intermediate", "seeds", "zero-shot [95% CI]", "gain [95% CI]", "seeds resampled too", "over"],
            [[r["column"], str(r["intermediate"] or "–"), str(r["n"]), _ci(r["score"]),
              _ci(r["gain"], sign=True, star=True), _ci(r.get("gain_seeds"), sign=True, star=True),
              r["baseline"] if r["gain"] else "–"] for r in mine]), ""]
    return body


def _stack_section(rows: list[dict], by_language: list[dict]) -> list[str]:
    if not rows:
        return []
    body = [INTERVALS + " Seeds: the stack's (n) and `none`'s.", "",
            _md(["target", "method", "intermediate", "seeds", "gain over none [95% CI]"], [
                [r["target"], r["method"], r["intermediate"], f"{r['n']} vs {r['n_none']}", _ci(r["gain"], True, True)]
                for r in rows]), ""]
    for target, method in dict.fromkeys((r["target"], r["method"]) for r in by_language):
        mine = [r for r in by_language if (r["target"], r["method"]) == (target, method)]
        inters = list(dict.fromkeys(r["intermediate"] for r in mine))
        cell = {(r["intermediate"], r["language"]): r["gain"] for r in mine}
        body += [f"**{target} [{method}]**: gain over none per language (* = significant)", "",
                 _md(["language", *inters], [[lang, *(_short(cell.get((i, lang))) for i in inters)]
                                             for lang in dict.fromkeys(r["language"] for r in mine)]), ""]
    return body


def _short(block: dict | None) -> str:
    return "–" if block is None else _f(block["gain"], sign=True) + ("*" if block["significant"] else "")


def _size_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = [INTERVALS + " Groups: the languages' CC-100 pretraining data (languages.tsv); every language here is "
            "Joshi class 4-5 (the 'high' tier).", ""]
    for key in dict.fromkeys((r["target"], r["method"], r["intermediate"]) for r in rows):
        mine = [r for r in rows if (r["target"], r["method"], r["intermediate"]) == key]
        groups = list(dict.fromkeys(r["group"] for r in mine))
        cell = {(r["size"], r["group"]): r for r in mine}
        sizes = list(dict.fromkeys(r["size"] for r in mine))
        body += [f"**{key[0]} [{key[1]}], intermediate {key[2]}**", "", _md(
            ["size", "examples", "seeds", *groups],
            [[size, str(next(r["examples"] for r in mine if r["size"] == size) or "–"),
              str(next(r["n"] for r in mine if r["size"] == size)),
              *(_ci(cell[size, g]["gain"], True, True) if (size, g) in cell else "–" for g in groups)]
             for size in sizes]), ""]
    return body


def _robustness_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    return [INTERVALS + " Drop: clean minus perturbed zero-shot score, over the languages the perturbation "
            "changed; smaller drop: the target-only drop minus the best stack's (positive: the intermediate task "
            "made the target more robust).", "",
            _md(["target", "method", "best stack", "perturbation", "seeds", "languages", "drop: none",
                 "drop: best stack", "smaller drop"], [
                [r["target"], r["method"], str(r["intermediate"]), r["label"], "{} vs {}".format(*r["seeds"]),
                 " ".join(r["languages"]),
                 _ci(r["drop_none"], True, True), _ci(r["drop_stack"], True, True), _ci(r["smaller_drop"], True, True)]
                for r in rows]), ""]
