"""Zero-shot evaluation of a run, a zoo entry or a bare backbone, as steps: what to evaluate (artifact, task,
head, split, encoding settings, destination: all checked before anything loads) -> the data of every language
-> load the model once -> score each language -> write the report."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import provenance, tokenized
from ..artifacts import OUTPUTS, check_destination, check_tree, to_json, write_text_atomic
from ..backbone import Backbone
from ..errors import StepstoneError
from ..evaluation import Scored, score
from ..formats import handler_for
from ..formats.qa import check_window_settings
from ..manifest import Manifest, read_manifest
from ..perturb import Perturbation, check_task, parse, perturb_examples
from ..progress import ProgressFactory, silent
from ..specs import Precision
from ..tasks import Split, TaskFormat, TaskSpec, get_task
from ..tasks.examples import load_examples, load_file
from ..zoo import Zoo
from .inference import load_model, resolve_artifact


@dataclass(frozen=True)
class Evaluation:
    """Zero-shot scores of one artifact on one task split: language -> metrics."""

    path: Path
    task: str
    split: str
    metric: str
    scores: dict[str, dict[str, float]]
    output: Path
    train_language: str = "en"
    skipped: dict[str, str] = field(default_factory=dict)  # language -> why it was not scored (no file)
    outside_benchmark: tuple[str, ...] = ()  # languages scored from local files beyond the benchmark's list
    # `perturb`: perturbation label (stepstone.perturb) -> language -> metrics on the perturbed examples
    perturbed: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # `data_file`: {"file", "label", "examples", "scores" (metrics), "in_domain" (main metric over `scores`'s
    # languages), "drop" (in_domain minus the file's main metric)}
    domain: dict | None = None
    # the main metric's per-example statistics (stepstone.metrics.statistics) of `scores` and `perturbed`, by
    # language (trained tasks; retrieval has none): the paired bootstrap's input (stepstone.experiments.stats)
    statistics: dict[str, np.ndarray] = field(default_factory=dict)
    perturbed_statistics: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def average(self) -> float:
        return sum(s[self.metric] for s in self.scores.values()) / len(self.scores)

    @property
    def zero_shot_languages(self) -> list[str]:
        """The evaluated languages other than the one the task trains in (English)."""
        return [lang for lang in self.scores if lang != self.train_language]

    @property
    def zero_shot(self) -> float | None:
        """The main metric averaged over `zero_shot_languages` (the headline); None if only English was scored."""
        langs = self.zero_shot_languages
        return sum(self.scores[lang][self.metric] for lang in langs) / len(langs) if langs else None


@dataclass(frozen=True)
class _Encoding:
    """The encoding settings of an evaluation, and how error messages name each (a flag or its default's source)."""

    length: int
    length_name: str
    stride: int | None
    explicit: bool  # chosen here, not the run's (recorded in the report under `encoding`)


def evaluate(target: str | None, *, task: str | None = None, zoo: Zoo | None = None,
             langs: Sequence[str] | None = None, split: str = "test", batch_size: int = 32,
             max_examples: int | None = None, data_dir: Path | None = None, max_length: int | None = None,
             backbone: str | None = None, output: Path | None = None, layer: int | None = None,
             pooling: str = "mean", doc_stride: int | None = None, skip_examples: int = 0,
             perturb: Sequence[str | Perturbation] = (), perturb_seed: int = 0, data_file: Path | None = None,
             data_lang: str = "en", progress: ProgressFactory = silent) -> Evaluation:
    """Zero-shot evaluation in every language asked for (default: the benchmark's list for the task).
    A language without a local file is skipped (recorded with the reason); none with data is an error.

    `target` is a run folder or zoo entry; `task` defaults to its (first) task and may name another
    task it has a head for, or a retrieval task (bucc, tatoeba: embeddings with the artifact's adapters
    active, no head). With no target, `backbone` + a retrieval task evaluates the bare backbone.
    `max_length` (tokens per example) and, for QA, `doc_stride` (window overlap) default to what the
    artifact was trained with (retrieval: 128); either one given, the report records both under `encoding`.
    `skip_examples`: leave out the first N examples of every language, before `max_examples` applies (a run
    trained on the front of a validation split, evaluated on the same split of parallel data such as XNLI or
    PAWS-X, would otherwise be scored on translations of its training examples); recorded as `skipped_examples`.
    `perturb`: specs (stepstone.perturb) scored on the same examples, seeded by `perturb_seed` (`perturbed`);
    `data_file`: a file in the task's native format, by `data_lang`'s metric rules (`domain`); not both at once.
    Scores go to `<artifact>/evaluations/<task>.<split>.json`, `evaluations/<backbone>.<task>.<split>.json`
    without an artifact, or `output`."""
    from ..retrieval import RetrievalSettings

    data_file = Path(data_file) if data_file is not None else None
    perturbations = _perturbations(perturb, data_file)  # every spec (and lexicon) checked before anything loads
    path, manifest = _artifact(target, zoo, backbone, task)
    spec_task, heads = _task_and_heads(manifest, task)
    if perturbations:
        check_task(spec_task)
    split_value = _split(split)
    encoding = _encoding(spec_task, manifest, max_length, doc_stride)
    destination = output or (path / OUTPUTS if path is not None else Path("evaluations") / _slug(backbone)) \
        / f"{spec_task.name}.{split_value.value}.json"
    check_destination(destination, "write")  # before the data and the model are loaded
    file_examples = load_file(spec_task, split_value, data_file, max_examples) if data_file is not None else None
    languages, examples, skipped, sources = _language_data(spec_task, split_value, langs, manifest, data_dir,
                                                           max_examples, skip_examples)
    outside = tuple(lang for lang in languages if lang not in spec_task.official_languages)
    settings = RetrievalSettings(layer=layer, pooling=pooling, batch_size=batch_size, max_length=encoding.length)
    with progress(f"load {path if path is not None else backbone}", None):
        loaded, manifest = load_model(path, backbone)
    loaded.check_max_length(encoding.length, encoding.length_name)
    scored = _scorer(loaded, spec_task, heads, manifest, batch_size, encoding, settings, progress)
    result = _scored(Evaluation(path or destination.parent, spec_task.name, split_value.value, spec_task.metric.main,
                                {}, destination, spec_task.train_language, skipped, outside),
                     scored, spec_task, {lang: examples[lang] for lang in languages}, perturbations, perturb_seed)
    if file_examples is not None:
        result = replace(result, domain=_domain(result, data_file, file_examples,
                                                scored(file_examples, data_lang,
                                                       f"{data_lang}, {data_file.name}").metrics))
    retrieval = None if spec_task.trainable else {"layer": settings.resolve_layer(loaded.model),
                                                  "pooling": settings.pooling.value, "max_length": settings.max_length}
    report = _report(result, manifest.name if manifest else loaded.spec.name, examples, sources, encoding, retrieval)
    report.update({"skipped_examples": skip_examples} if skip_examples else {},
                  **({"perturbed": _perturbed_report(result, perturb_seed)} if perturbations else {}),
                  **({"domain": result.domain} if result.domain is not None else {}))
    write_text_atomic(destination, to_json(report))
    return result


def _scorer(loaded: Backbone, task: TaskSpec, heads: dict[str, str], manifest: Manifest | None, batch_size: int,
            encoding: _Encoding, settings: Any, progress: ProgressFactory):
    """scored(examples, lang, what=None) -> Scored: one language's examples (clean, perturbed or a file's)."""
    def scored(chosen: list[dict], lang: str, what: str | None = None) -> Scored:
        if task.trainable:
            return _score_task(loaded, task, heads[task.name], chosen, lang, manifest, batch_size,
                               encoding.length, encoding.stride, progress, *([what] if what else []))
        return Scored(_score_retrieval(loaded, task, chosen, lang, settings, progress), None)

    return scored


def _scored(evaluation: Evaluation, scored, task: TaskSpec, examples: dict[str, list[dict]],
            perturbations: list[Perturbation], seed: int) -> Evaluation:
    """`evaluation` with the scores and statistics of every language's examples, clean, then under each
    perturbation."""
    clean = {lang: scored(chosen, lang) for lang, chosen in examples.items()}

    def noisy(p: Perturbation, lang: str) -> Scored:
        changed = perturb_examples(task, examples[lang], p, seed, lang)
        # examples it left as they were (a lexicon without this language's words) score as the clean ones
        return clean[lang] if changed == examples[lang] else scored(changed, lang, f"{lang}, {p.label}")

    perturbed = {p.label: {lang: noisy(p, lang) for lang in examples} for p in perturbations}

    def metrics(by_language: dict[str, Scored]) -> dict[str, dict[str, float]]:
        return {lang: s.metrics for lang, s in by_language.items()}

    def statistics(by_language: dict[str, Scored]) -> dict[str, np.ndarray]:
        return {lang: s.statistics for lang, s in by_language.items() if s.statistics is not None}

    return replace(evaluation, scores=metrics(clean), statistics=statistics(clean),
                   perturbed={label: metrics(by_lang) for label, by_lang in perturbed.items()},
                   perturbed_statistics={label: statistics(by_lang) for label, by_lang in perturbed.items()})


def _language_data(task: TaskSpec, split: Split, langs: Sequence[str] | None, manifest: Manifest | None,
                   data_dir: Path | None, limit: int | None, skip: int) -> tuple[list[str], dict, dict, dict]:
    """The languages with data (those asked for, default the benchmark's list) and `_examples_by_language`'s
    examples, skipped languages and sources; the data root defaults to the one the run recorded."""
    languages = list(dict.fromkeys(langs)) if langs else list(task.official_languages)
    recorded = manifest.spec.get("data_dir") if manifest else None
    data_dir = data_dir if data_dir is not None else (Path(recorded) if recorded else None)
    _check_skip(task, skip)
    examples, skipped, sources = _examples_by_language(task, split, languages, data_dir, limit, skip)
    return [lang for lang in languages if lang in examples], examples, skipped, sources


def _perturbations(specs: Sequence[str | Perturbation], data_file: Path | None) -> list[Perturbation]:
    """Every perturbation parsed (a lexicon relative to the current directory), repeats dropped."""
    parsed = [spec if isinstance(spec, Perturbation) else parse(spec) for spec in specs]
    if parsed and data_file is not None:
        raise StepstoneError("--perturb and --data-file are separate evaluations (robustness on the task's own "
                             "languages, domain shift on a file): run one, then the other")
    return list({p.label: p for p in parsed}.values())


def _domain(result: Evaluation, data_file: Path, examples: list[dict], scores: dict[str, float]) -> dict:
    """The domain-shift record: the file's scores and the drop from the in-domain languages' mean."""
    return {"file": str(data_file), "label": data_file.stem, "examples": len(examples), "scores": scores,
            "in_domain": result.average, "drop": result.average - scores[result.metric]}


def _perturbed_report(result: Evaluation, seed: int) -> dict:
    """Per perturbation: its seed, the scores per language and the drop of the main metric from clean."""
    main = result.metric
    return {label: {"seed": seed, "scores": by_lang,
                    "drop": {lang: result.scores[lang][main] - metrics[main] for lang, metrics in by_lang.items()}}
            for label, by_lang in result.perturbed.items()}


def _artifact(target: str | None, zoo: Zoo | None, backbone: str | None,
              task: str | None) -> tuple[Path | None, Manifest | None]:
    """The artifact to evaluate and its manifest (not yet verified: loading does), or none for a bare backbone."""
    if target is None and (backbone is None or task is None):
        raise StepstoneError("name a run or zoo entry to evaluate, or give --backbone and --task for a "
                             "retrieval task (bucc, tatoeba), which needs no training")
    path = resolve_artifact(target, zoo) if target is not None else None
    manifest = read_manifest(path, verify=False) if path is not None else None
    if path is not None:
        check_tree(path)  # no link inside: scores are written into it
    return path, manifest


def _task_and_heads(manifest: Manifest | None, task: str | None) -> tuple[TaskSpec, dict[str, str]]:
    """The task to evaluate and the artifact's heads by task name (a head of a sibling task with the same
    output space serving a task it was not trained on: an NLI head (ANLI) scores XNLI, a QA head (TyDiQA)
    XQuAD). A trainable task needs a head."""
    records = {t.name: t for t in manifest.tasks} if manifest else {}
    if task is None and not records:
        name = manifest.name
        raise StepstoneError(f"'{name}' has no task head (an imported adapter): evaluate it on a retrieval task "
                             f"(--task bucc or tatoeba), or train a head on it: --on \"Stack({name})\"")
    name_asked = task or manifest.task.name
    spec_task = records[name_asked].registered() if name_asked in records else get_task(name_asked)
    heads = {name: t.head for name, t in records.items()}
    if spec_task.trainable and spec_task.name not in heads:
        sibling = next((r for r in records.values() if r.format == spec_task.format.value
                        and r.labels == spec_task.labels and r.num_choices == spec_task.num_choices), None)
        if sibling is not None:
            heads[spec_task.name] = sibling.head
    if spec_task.trainable and spec_task.name not in heads:
        what = f"'{manifest.name}'" if manifest else "a bare backbone"
        raise StepstoneError(f"{what} has no head for task '{spec_task.name}' (heads: {', '.join(heads) or 'none'}); "
                             "retrieval tasks (bucc, tatoeba) work with any artifact")
    return spec_task, heads


def _split(split: str) -> Split:
    try:
        return Split(split)
    except ValueError:
        raise StepstoneError(f"unknown split '{split}' (valid: {', '.join(s.value for s in Split)})") from None


def _encoding(task: TaskSpec, manifest: Manifest | None, max_length: int | None,
              doc_stride: int | None) -> _Encoding:
    """max_length and (QA only) doc_stride: the ones given, else the run's train settings (retrieval: 128)."""
    trained = manifest.spec["train"] if task.trainable else {}
    length, length_name = _setting(max_length, "--max-length", trained.get("max_length", 128),
                                   "the run's train.max_length" if trained else "the retrieval default max_length")
    if length < 1:
        raise StepstoneError(f"--max-length must be at least 1 (got {max_length})")
    stride = None
    if task.format is TaskFormat.QA:
        stride, stride_name = _setting(doc_stride, "--doc-stride", trained["doc_stride"], "the run's train.doc_stride")
        check_window_settings(length, stride, stride_name, length_name)
    elif doc_stride is not None:
        raise StepstoneError(f"--doc-stride applies to QA tasks only: '{task.name}' is a "
                             f"{task.format.value} task, which has no windows")
    return _Encoding(length, length_name, stride, max_length is not None or doc_stride is not None)


def _setting(given: int | None, flag: str, default: int, name: str) -> tuple[int, str]:
    """An evaluation setting and how error messages name it: the flag, or where its default came from."""
    return (given, flag) if given is not None else (default, name)


def _report(result: Evaluation, name: str, examples: dict[str, list[dict]], sources: dict[str, list],
            encoding: _Encoding, retrieval: dict | None) -> dict:
    """The JSON report of an evaluation (`retrieval`: the retrieval settings used, for a retrieval task)."""
    report = {"artifact": name, "task": result.task, "split": result.split, "metric": result.metric,
              "scores": result.scores, "examples": {lang: len(ex) for lang, ex in examples.items()}}
    if result.zero_shot is not None:  # the headline: the main metric over the languages other than English
        report["zero_shot"] = {"mean": result.zero_shot, "languages": result.zero_shot_languages}
    if sources:
        report["sources"] = sources
    if result.skipped:
        report["skipped"] = result.skipped
    if result.outside_benchmark:
        report["outside_benchmark"] = list(result.outside_benchmark)
    if retrieval is not None:
        report["retrieval"] = retrieval
    elif encoding.explicit:
        report["encoding"] = {"max_length": encoding.length,
                              **({"doc_stride": encoding.stride} if encoding.stride is not None else {})}
    return report


def _check_skip(task: TaskSpec, skip: int) -> None:
    if skip < 0:
        raise StepstoneError(f"--skip-examples must be at least 0 (got {skip})")
    if skip and not task.trainable:
        raise StepstoneError(f"--skip-examples applies to trained tasks: '{task.name}' is a retrieval task, whose "
                             "examples are one problem per language")


def _examples_by_language(task: TaskSpec, split: Split, languages: list[str], data_dir: Path | None,
                          limit: int | None, skip: int = 0) -> tuple[dict[str, list[dict]], dict[str, str], dict[str, list]]:
    """The examples of every language that has data (after the first `skip`), why each other one has none (no
    local file), and where each language's data came from (files or hub datasets; generated toy data have none).
    Any other problem (a malformed file, an unknown language, nothing left after `skip`) is an error. No language
    with data: error."""
    from ..tasks.examples import missing_data

    examples, skipped, sources = {}, {}, {}
    for lang in languages:
        reason = missing_data(task, split, lang, data_dir)
        if reason is None:
            with provenance.recording() as read:
                examples[lang] = _after(task, split, lang, data_dir, limit, skip)
            record = provenance.data_source(read, split.value, lang, len(examples[lang]), data_dir)
            if record is not None:
                sources[lang] = record["sources"]
        else:
            skipped[lang] = reason
    if not examples:
        first, *rest = languages
        more = f" (and likewise for {len(rest)} more: {', '.join(rest)})" if rest else ""
        raise StepstoneError(f"no {split.value} data for task '{task.name}' in any language asked for: "
                             f"{skipped[first]}{more}")
    return examples, skipped, sources


def _after(task: TaskSpec, split: Split, lang: str, data_dir: Path | None, limit: int | None,
           skip: int) -> list[dict]:
    """The first `limit` examples after the first `skip` of one language."""
    if not skip:
        return load_examples(task, split, lang, data_dir, limit)
    every = load_examples(task, split, lang, data_dir, None if limit is None else skip + limit)
    if len(every) <= skip:
        raise StepstoneError(f"task '{task.name}', {split.value} split, language '{lang}' has {len(every)} examples: "
                             f"none is left after skipping the first {skip}")
    return every[skip:]


def _score_task(loaded: Backbone, task: TaskSpec, head: str, examples: list[dict], lang: str, manifest: Manifest,
                batch_size: int, max_length: int, doc_stride: int | None, progress: ProgressFactory,
                what: str | None = None) -> Scored:
    """`lang` sets the metric's language rules (QA normalisation); `what` names the examples in progress lines
    where they are not plainly that language's (perturbed ones, a data file)."""
    handler, trained = handler_for(task), manifest.spec["train"]
    rows = tokenized.encode(handler, examples, loaded.tokenizer, task, max_length,
                            trained["doc_stride"] if doc_stride is None else doc_stride, train=False,
                            progress=progress, description=f"tokenize {task.name} [{what or lang}]")
    return score(loaded.model, handler, task, examples, rows, loaded.tokenizer, batch_size, lang, progress,
                 head=head, precision=Precision(trained.get("precision", Precision.FP32.value)), what=what)


def _score_retrieval(loaded: Backbone, task: TaskSpec, examples: list[dict], lang: str, settings: Any,
                     progress: ProgressFactory) -> dict[str, float]:
    from ..data.readers import BuccData
    from ..metrics import Metric
    from ..retrieval import evaluate_bucc, evaluate_tatoeba

    if task.metric is Metric.BUCC_F1:
        (problem,) = examples
        data = BuccData(problem["source"], problem["target"], problem["gold"])
        return evaluate_bucc(loaded.model, loaded.tokenizer, data, settings, progress, f"{task.name} [{lang}]")
    pairs = [(e["source"], e["target"]) for e in examples]
    return evaluate_tatoeba(loaded.model, loaded.tokenizer, pairs, settings, progress, f"{task.name} [{lang}]")


def _slug(name: str) -> str:
    """A backbone id or path as one folder name (a local folder by its own name)."""
    name = Path(name).name if Path(name).is_dir() else name
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip("/")).strip("_") or "backbone"


