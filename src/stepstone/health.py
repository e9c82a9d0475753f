"""Did a run learn? One rule, in one place, applied where a run ends: the manifest's `learning` record, the
warning line of `stepstone train`, the grid's cell record and the marks of `stepstone report`.

Two rules; the first decides wherever it applies, the second where it does not:

1. *Dev at the baseline*: the English dev score (the task's main metric, or its accuracy where the metric reports
   one beside an F1: UD-POS, `Metric.baseline_key`) is at most `margin` points above the baseline level, the higher
   of chance and the majority-class baseline. Chance is 100 / classes (classification, token accuracy) or 100 /
   choices (multiple choice), for accuracies only; the majority-class baseline is that same key of the task's own
   metric on the dev set used, scored as if every dev example (or word) got the dev set's most frequent label (or
   answer position). `margin` is `DEV_Z` standard errors of a constant predictor's accuracy on the n dev labels,
   `100 * sqrt(b * (1 - b) / n)` at the level b, and at least `DEV_MARGIN` points. UD-POS is judged by its
   accuracy: under seqeval F1 the majority tag scores 0.1 (English dev, all NOUN: one chunk per sentence) and
   random tags 5.3, so a run that learned nothing would clear an F1 level.
2. *Flat loss* (no dev score, or no baseline to hold it against: QA, a run with `train.dev=false`): the training
   loss never left its starting value. With `W = min(LOSS_WINDOW, steps // 4)`, the mean of the last W step losses
   is above `1 - FLAT_LOSS` times the mean of the first W, or above `1 - PRIOR_LOSS` times the label-prior loss (the
   entropy of the training labels: the loss of a model that predicts the label frequencies and nothing else; ln K
   for K balanced classes: ln 2 for SST-2, ln 3 for NLI). Needs `MIN_LOSS_STEPS` steps.

Why the dev score decides where it can: it is held-out evidence, and a hard task learns on dev before its training
loss moves much (XNLI, 1,000 examples, lr 1e-3: dev 45.0 against a 33.5 majority class while the loss went 1.099 ->
1.061, 3.5% and within 4% of ln 3; benchmarks/results/calibration-e5-small.json). Where the dev rule flags a run,
the loss rule's findings are added to the reason, and where the loss fell all the same, that: the run fit its
training data, and its dev set may differ from it (the HellaSwag adapter of docs/results/cpu-medium trained on
ActivityNet captions, 1.386 -> 1.266, and sat at chance on a WikiHow dev set; 46.7% on held-out ActivityNet).

A task is **learned** when no rule fires and one could be applied; **unknown** when none could (no dev data and
fewer than `MIN_LOSS_STEPS` steps). A run is not learned when any task is, unknown when any task is and none is not
learned, else learned.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np

from .tasks.base import TaskSpec

# A model that collapsed onto one class scores exactly that class's share of the dev set, at most the majority
# baseline; one whose predictions vary but carry no signal lands within a few standard errors of it. Two standard
# errors: a model without the task clears the margin about 1 time in 40. On a 200-example binary dev set near 50% that
# is 7.1 points (SST-2 at 57.0 with its loss at ln 2, as issue 13 measured, is flagged; 85.5 and 88.0 are not); COPA on
# 400 examples (dev 52.0 / 57.0 against a 55.0 majority, 100 dev examples: margin 9.9) is flagged at both learning
# rates tried. On thousands of tagged words it is under a point, hence the floor of one point (2 examples of 200).
DEV_Z = 2.0
DEV_MARGIN = 1.0
# Where no dev score decides (QA here). In the calibration sweep the e5-small adapters that learned moved their
# smoothed loss by 17-75% (SST-2 -40/-46%, TyDiQA -41/-64%, UD-POS -17/-75%), COPA, which did not, by 0.3-0.4%;
# 5% leaves room for the noise of a window's mean (a 16-example batch of a 2-class task moves by ~0.1 around ln 2).
FLAT_LOSS = 0.05
PRIOR_LOSS = 0.05
# Step losses averaged at each end of the curve: one batch's loss is too noisy to compare; 10 steps smooth it, and a
# quarter of a short run keeps the two windows apart.
LOSS_WINDOW = 10
# Below 8 steps the windows are single batches (W = 1): too noisy to call a loss flat.
MIN_LOSS_STEPS = 8
_IGNORE = -100  # unlabelled positions (formats.base.IGNORE)


class Verdict(str, Enum):
    LEARNED = "learned"
    NOT_LEARNED = "not-learned"
    UNKNOWN = "unknown"  # no rule could be applied


@dataclass(frozen=True)
class Baseline:
    """What a model that learned nothing about a task scores on its dev set (metric points) and on its training
    loss. None where it is not defined (chance for F1 metrics, everything for QA, majority without dev data)."""

    metric: str
    chance: float | None = None
    majority: float | None = None
    prior_loss: float | None = None
    dev_labels: int = 0  # dev examples (or labelled words) the majority class was counted over

    @property
    def level(self) -> float | None:
        values = [v for v in (self.chance, self.majority) if v is not None]
        return max(values) if values else None

    @property
    def margin(self) -> float | None:
        """How far above `level` a dev score must be to count as learned (points): DEV_Z standard errors of a
        constant predictor's accuracy on `dev_labels` labels, at least DEV_MARGIN."""
        if self.level is None:
            return None
        p = min(max(self.level / 100.0, 0.0), 1.0)
        spread = 100.0 * math.sqrt(p * (1 - p) / self.dev_labels) if self.dev_labels else 0.0
        return max(DEV_MARGIN, DEV_Z * spread)


@dataclass(frozen=True)
class Judgement:
    """The rule's verdict on one task of a run, with the numbers it looked at."""

    verdict: Verdict
    reasons: tuple[str, ...]
    baseline: Baseline
    dev: float | None
    loss_start: float | None
    loss_end: float | None
    steps: int

    def record(self) -> dict:
        """The manifest's record (also the grid cell's): JSON values only."""
        b = self.baseline
        return {"verdict": self.verdict.value, "reason": "; ".join(self.reasons) or None, "metric": b.metric,
                "dev": self.dev, "chance": b.chance, "majority": b.majority, "level": b.level, "margin": b.margin,
                "prior_loss": b.prior_loss, "loss_start": self.loss_start, "loss_end": self.loss_end,
                "steps": self.steps}


def judge(losses: Sequence[float], dev: float | None, baseline: Baseline) -> Judgement:
    """Apply the module's rule to one task: its step losses in order, its English dev score (None: no dev data)
    and its baseline."""
    level, margin = baseline.level, baseline.margin
    by_dev = dev is not None and level is not None
    reasons = []
    if by_dev and dev <= level + margin:
        which = " / ".join(f"{name} {value:.1f}" for name, value in (("chance", baseline.chance),
                                                                       ("majority class", baseline.majority))
                           if value is not None)
        reasons.append(f"English dev {baseline.metric} {dev:.1f} is within {margin:.1f} points of the baseline "
                       f"({which})")
    start = end = None
    if len(losses) >= 2:
        window = max(1, min(LOSS_WINDOW, len(losses) // 4))
        start, end = _mean(losses[:window]), _mean(losses[-window:])
    by_loss = len(losses) >= MIN_LOSS_STEPS
    flat = _loss_findings(start, end, len(losses), baseline.prior_loss)
    if reasons and by_loss and not flat:  # the dev set says nothing was learned, the training loss says otherwise
        reasons.append(f"yet its training loss fell ({start:.3f} -> {end:.3f} over {len(losses)} steps): it fit "
                       "its training data but not the dev set, which may differ from it (another domain) or it "
                       "overfit")
    if reasons or not by_dev:  # the dev score decides where it can; the loss adds to its reason
        reasons += flat
    verdict = Verdict.NOT_LEARNED if reasons else Verdict.LEARNED if by_dev or by_loss else Verdict.UNKNOWN
    return Judgement(verdict, tuple(reasons), baseline, dev, start, end, len(losses))


def _loss_findings(start: float | None, end: float | None, steps: int, prior_loss: float | None) -> list[str]:
    """The flat-loss rule's findings on a curve's start and end means (none: the loss fell, or under
    MIN_LOSS_STEPS steps to judge by)."""
    if steps < MIN_LOSS_STEPS:
        return []
    if end > (1 - FLAT_LOSS) * start:
        return [f"the training loss never left its starting value ({start:.3f} -> {end:.3f} over {steps} steps)"]
    if prior_loss is not None and end > (1 - PRIOR_LOSS) * prior_loss:
        return [f"the training loss stayed at the label-prior level ({end:.3f}; predicting the label "
                f"frequencies alone scores {prior_loss:.3f})"]
    return []


def baseline(task: TaskSpec, handler, dev_examples: list[dict], dev_rows: list[dict],
             train_rows: list[dict]) -> Baseline:
    """The task's baseline: chance from its classes or choices, the majority class of `dev_rows` scored by the
    format's own `handler.score` (so it is exactly the metric of a constant prediction on this dev set), and
    the entropy of the labels of `train_rows`."""
    classes = task.num_choices or len(task.labels)
    key = task.metric.baseline_key
    chance = 100.0 / classes if key == "accuracy" and classes else None  # a guess's accuracy; F1 has no such level
    majority = None
    labels = _labels(dev_rows)
    if labels:
        index = min(Counter(labels).items(), key=lambda kv: (-kv[1], kv[0]))[0]
        outputs = [_one_hot(row, index, classes) for row in dev_rows]
        majority = handler.score(dev_examples, dev_rows, outputs, task, task.train_language)[key]
    counts = Counter(_labels(train_rows))
    total = sum(counts.values())
    prior = -sum(n / total * math.log(n / total) for n in counts.values()) if total else None
    return Baseline(key, chance, majority, prior, len(labels))


def assess(parts, result) -> dict:
    """The manifest's `learning` record of a finished run (`parts`: its training.TaskData, `result`: its
    training.TrainResult): the first task's numbers, the run's verdict and reason, and `by_task` for a
    multi-task run."""
    dev_by_task = result.history[result.best_epoch - 1].get("dev_by_task", {}) if len(parts) > 1 and result.history \
        else {parts[0].task.name: result.dev_metrics}
    judged = {}
    for part in parts:
        losses = [r["loss"] for r in result.log if r["kind"] == "step" and r["tasks"] == [part.task.name]]
        scores = dev_by_task.get(part.task.name) or {}
        judged[part.task.name] = judge(losses, scores.get(part.task.metric.baseline_key),
                                       baseline(part.task, part.handler, part.dev_examples, part.dev_rows, part.rows))
    verdicts = {j.verdict for j in judged.values()}
    verdict = next(v for v in (Verdict.NOT_LEARNED, Verdict.UNKNOWN, Verdict.LEARNED) if v in verdicts)
    record = judged[parts[0].task.name].record()
    record["verdict"] = verdict.value
    if len(parts) > 1:
        reasons = [f"{name}: {j.record()['reason']}" for name, j in judged.items() if j.reasons]
        record["reason"] = "; ".join(reasons) or None
        record["by_task"] = {name: j.record() for name, j in judged.items()}
    return record


def warning(name: str, learning: dict | None) -> str | None:
    """The one warning line for a run that did not learn (None otherwise): what `stepstone train` and the grid
    print."""
    if not learning or learning.get("verdict") != Verdict.NOT_LEARNED.value:
        return None
    steps, start, end = learning.get("steps") or 0, learning.get("loss_start"), learning.get("loss_end")
    fell = learning.get("dev") is not None and steps >= MIN_LOSS_STEPS and not _loss_findings(
        start, end, steps, learning.get("prior_loss"))
    check = "check that the dev set is like the training data" if fell else "check train.lr"
    return f"warning: '{name}' did not learn: {learning['reason']} ({check}; README: Did it learn?)"


def _labels(rows: list[dict]) -> list[int]:
    """Every label of `rows` (a row's `labels` is an int, or a list with -100 at unlabelled positions); none for
    formats without labels (QA)."""
    out = []
    for row in rows:
        value = row.get("labels")
        if isinstance(value, list):
            out += [v for v in value if v != _IGNORE]
        elif value is not None:
            out.append(int(value))
    return out


def _one_hot(row: dict, index: int, classes: int) -> np.ndarray:
    """A model output that predicts class `index`: one row of scores per token for token-level labels."""
    positions = len(row["input_ids"]) if isinstance(row.get("labels"), list) else None
    out = np.zeros((classes,) if positions is None else (positions, classes), dtype=np.float32)
    out[..., index] = 1.0
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
