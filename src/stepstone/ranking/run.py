"""`rank`: every candidate adapter of a target scored by the chosen estimators, in this order: what can be
checked without a model (target, estimators, numbers, candidates and their backbones), the target's examples,
the backbone, then per estimator every candidate (NONE, the bare backbone, first)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import StepstoneError, choices
from ..manifest import Kind
from ..pipelines.spec import set_threads
from ..progress import ProgressFactory, silent
from ..specs import BackboneSpec, TrainSpec
from ..tasks import TASKS, Split, TaskSpec, get_task
from ..zoo import Entry, Zoo
from .estimators import Context
from .records import DEFAULT_ESTIMATORS, NONE, Estimator, Ranking, Row, Score, parse_estimators

DEFAULT_EXAMPLES = 500  # English training examples of the target the estimators read
DEFAULT_STEPS = 50  # proxy: optimizer steps of the short target-adapter training
DEFAULT_METHOD = "bottleneck"  # proxy's target adapter when the candidates do not agree on one


def rank(target: str, *, candidates: Sequence[str] | None = None,
         estimators: Sequence[Estimator | str] = DEFAULT_ESTIMATORS, examples: int | None = None,
         data_dir: Path | None = None, zoo: Zoo | None = None, backbone: str | None = None,
         method: str | None = None, train_split: str = "train", steps: int = DEFAULT_STEPS,
         train: TrainSpec | None = None, progress: ProgressFactory = silent) -> Ranking:
    """Score `candidates` (zoo entry names; default: every zoo adapter on the backbone) and the bare backbone
    (NONE) for target task `target`, with `estimators`, on its first `examples` English `train_split` examples
    (default: DEFAULT_EXAMPLES, or all of them where there are fewer; more than there are is an error).
    backbone: the one the candidates were trained on (default: theirs; a candidate on another is refused).
    method: the target adapter's method for proxy (default: the candidates' own when they agree, else
    bottleneck). train: proxy's training settings (default proxy.PROXY_TRAIN; `steps` caps its optimizer
    steps), the token length of every estimator (its max_length) and the torch threads (its threads). Bad input raises StepstoneError before
    anything is computed or cached."""
    from .proxy import PROXY_TRAIN

    task = _target_task(target)
    chosen = parse_estimators([str(e) for e in estimators])
    for what, value in (("examples", examples), ("steps", steps)):
        if value is not None and value < 1:
            raise StepstoneError(f"{what} must be >= 1 (got {value})")
    if train_split not in (Split.TRAIN.value, Split.VALIDATION.value):
        raise StepstoneError(f"train_split must be train or validation (got '{train_split}')")
    _check_method(method)
    zoo = zoo or Zoo()
    entries = _candidates(zoo, candidates)
    spec = _backbone_spec(entries, backbone, explicit=candidates is not None)
    split = Split(train_split)
    task, target_examples = _target_examples(task, split, data_dir, examples)
    train = train or PROXY_TRAIN
    set_threads(train.threads)  # as a training with these settings would run (a grid cell's: its threads)
    loaded = _load_backbone(spec, train.max_length)
    entries = _on_backbone(entries, loaded, explicit=candidates is not None, zoo=zoo)
    rows = _encode(task, target_examples, loaded.tokenizer, train, progress)
    context = Context(task, target_examples, rows, loaded, split, data_dir, train, progress)
    method = method or _common_method(entries)
    notes, chosen = _applicable(task, chosen)
    scored = {e: _score_all(e, context, entries, method, steps, train, zoo) for e in chosen}
    out = [Row(NONE, None, None, {e.value: scored[e][NONE] for e in chosen})]
    out += [Row(c.name, _intermediate(c), c.manifest.method.kind, {e.value: scored[e][c.name] for e in chosen})
            for c in entries]
    return Ranking(task.name, loaded.spec.name, len(target_examples), chosen, tuple(out),
                   _reductions(task, chosen, method, steps, train), tuple(notes))


# ------------------------------------------------------------------------------------------------ checks
def _target_task(name: str) -> TaskSpec:
    task = get_task(name)  # unknown: the valid names and a did-you-mean
    if not task.trainable:
        trained = [n for n, t in TASKS.items() if t.trainable]
        raise StepstoneError(f"task '{name}' is a retrieval task: it has no labels and trains nothing, so there is "
                             f"nothing to rank adapters for (rank a trained target: {choices(trained)})")
    return task


def _check_method(method: str | None) -> None:
    """proxy's target adapter: a registered adapter method (full fine-tuning stacks nothing)."""
    from ..methods import METHODS, Family

    if method is not None and METHODS.get(method).family is Family.FULL:
        adapters = [m for m in METHODS.in_order() if METHODS.get(m).family is not Family.FULL]
        raise StepstoneError(f"method '{method}' trains no adapter to stack on a candidate (proxy's target adapter: "
                             f"{choices(adapters)})")


def _candidates(zoo: Zoo, names: Sequence[str] | None) -> list[Entry]:
    """The named zoo entries (each once, NONE skipped: it is always a row), else every adapter of the zoo."""
    if names is None:
        found = [zoo.get(e.name) for e in zoo.entries() if e.manifest.kind is Kind.ADAPTER]
        if not found:
            raise StepstoneError(f"no adapters to rank in the zoo {zoo.root} (train some, or pass --zoo)")
        return found
    entries = [zoo.get(n) for n in dict.fromkeys(names) if n != NONE]
    for entry in entries:
        if entry.manifest.kind is not Kind.ADAPTER:
            raise StepstoneError(f"candidate '{entry.name}' is a {entry.manifest.kind.value}, not an adapter: only "
                                 "zoo adapters are stacked under a target")
    if not entries:
        raise StepstoneError("no candidates besides 'none' (the bare backbone, always ranked): name zoo adapters")
    return entries


def _backbone_spec(entries: list[Entry], backbone: str | None, explicit: bool) -> BackboneSpec:
    """The backbone to load: `backbone` (the candidates' recorded settings kept), else the one every candidate
    was trained on."""
    records = {e.manifest.backbone.fingerprint: e for e in entries}
    if backbone is None and len(records) > 1:
        detail = "; ".join(f"{e.manifest.backbone.name} ({fp[:12]}): "
                           + ", ".join(x.name for x in entries if x.manifest.backbone.fingerprint == fp)
                           for fp, e in records.items())
        hint = "name candidates of one backbone" if explicit else "pass --backbone, or --candidates of one backbone"
        raise StepstoneError(f"the candidates were trained on different backbones ({detail}): {hint}")
    record = entries[0].manifest.backbone
    return record.spec(backbone or record.location())


def _load_backbone(spec: BackboneSpec, max_length: int) -> Any:
    from ..backbone import load_backbone

    loaded = load_backbone(spec)
    loaded.check_max_length(max_length)
    return loaded


def _on_backbone(entries: list[Entry], loaded: Any, explicit: bool, zoo: Zoo) -> list[Entry]:
    """The candidates trained on the loaded backbone (by fingerprint). A named candidate on another one is an
    error; of the whole zoo (no names), those are left out, and none left is an error."""
    other = [e for e in entries if e.manifest.backbone.fingerprint != loaded.fingerprint]
    if explicit and other:
        e = other[0]
        raise StepstoneError(f"candidate '{e.name}' was trained on backbone '{e.manifest.backbone.name}' "
                             f"(fingerprint {e.manifest.backbone.fingerprint}), not on '{loaded.spec.name}' "
                             f"(fingerprint {loaded.fingerprint}): rank candidates of one backbone")
    kept = [e for e in entries if e not in other]
    if not kept:
        raise StepstoneError(f"no adapter in the zoo {zoo.root} was trained on backbone '{loaded.spec.name}' "
                             f"(entries: {choices(e.name for e in entries)})")
    return kept


def _target_examples(task: TaskSpec, split: Split, data_dir: Path | None,
                     count: int | None) -> tuple[TaskSpec, list[dict]]:
    """The first `count` English `split` examples of the target (open label sets derived from them); fewer
    there is an error saying how many there are. None: DEFAULT_EXAMPLES, or as many as there are."""
    from ..tasks.examples import load_examples

    examples = load_examples(task, split, task.train_language, data_dir, count or DEFAULT_EXAMPLES)
    count = count or len(examples)
    if task.open_labels:
        task = task.derive_labels(examples)
        examples = load_examples(task, split, task.train_language, data_dir, count)
    if len(examples) < count:
        where = f" under {data_dir}" if data_dir is not None else ""
        raise StepstoneError(f"asked for {count} examples, but task '{task.name}' has {len(examples)} English {split.value} "
                             f"examples{where}: use {len(examples)} or fewer")
    return task, examples


def _encode(task: TaskSpec, examples: list[dict], tokenizer: Any, train: TrainSpec,
            progress: ProgressFactory) -> list[dict]:
    from .. import tokenized
    from ..formats import handler_for

    return tokenized.encode(handler_for(task), examples, tokenizer, task, train.max_length, train.doc_stride, True,
                            progress)


def _common_method(entries: list[Entry]) -> str:
    kinds = {e.manifest.method.kind for e in entries}
    return kinds.pop() if len(kinds) == 1 else DEFAULT_METHOD


def _applicable(task: TaskSpec, chosen: tuple[Estimator, ...]) -> tuple[list[str], tuple[Estimator, ...]]:
    """LogME needs one label per fixed-size feature: a format without a reduction (extractive QA) falls back to
    proxy, said in a note."""
    from .features import REDUCTIONS

    if Estimator.LOGME not in chosen or task.format in REDUCTIONS:
        return [], chosen
    rest = tuple(e for e in chosen if e is not Estimator.LOGME)
    fallback = rest if Estimator.PROXY in rest else (*rest, Estimator.PROXY)
    return [f"logme does not apply to {task.format.value} targets ({task.name}: answers are spans, not one label "
            f"per feature vector): ranked by {', '.join(e.value for e in fallback)} instead"], fallback


def _intermediate(entry: Entry) -> str:
    return "+".join(t.name for t in entry.manifest.tasks) or entry.name


def _reductions(task: TaskSpec, chosen: tuple[Estimator, ...], method: str, steps: int, train: TrainSpec) -> dict:
    from .features import EMBEDDING, REDUCTIONS
    from .proxy import proxy_train

    proxy = proxy_train(train, steps, 10**9)
    described = {Estimator.LOGME: lambda: REDUCTIONS[task.format][1], Estimator.SEMB: lambda: EMBEDDING,
                 Estimator.PROXY: lambda: f"{method} target adapter, {steps} steps of {proxy.batch_size} at lr "
                                          f"{proxy.lr}, English dev {task.metric.main}"}
    return {e.value: described[e]() for e in chosen}


# ------------------------------------------------------------------------------------------------ scoring
def _timed(compute: Callable[[], tuple[float | None, bool]]) -> Score:
    """The score `compute()` gives and the seconds it took (ms precision: what the JSON keeps)."""
    start = time.perf_counter()
    try:
        value, cached = compute()
    except StepstoneError as err:  # this candidate cannot be scored by this estimator: its row says why
        return Score(None, round(time.perf_counter() - start, 3), str(err))
    return Score(value, round(time.perf_counter() - start, 3), None, cached)


def _score_all(estimator: Estimator, context: Context, entries: list[Entry], method: str, steps: int,
               train: TrainSpec, zoo: Zoo) -> dict[str, Score]:
    """Candidate name (NONE included) -> its score by `estimator`."""
    from . import estimators as by_kind

    score = {Estimator.LOGME: by_kind.logme_score, Estimator.SEMB: by_kind.semb_score,
             Estimator.PROXY: by_kind.proxy_of(method, steps, train, zoo)}[estimator]
    return {name: _timed(lambda c=candidate: score(context, c))
            for name, candidate in [(NONE, None), *((e.name, e) for e in entries)]}
