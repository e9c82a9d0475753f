"""The smoke demo (`stepstone demo`): the whole pipeline on the tiny backbone and toy tasks, offline.

Two intermediate adapters (toy-sentiment, toy-pair) go to a demo zoo; the target task (toy-tags,
BIO tagging) is trained four ways -- adapter alone, Stack(intermediate, target), Fuse(both) + target,
and the full fine-tune baseline -- then every run is evaluated zero-shot in en, xa and xb.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .artifacts import check_destination, to_json, write_text_atomic
from .composition import parse
from .errors import StepstoneError
from .pipelines import evaluate, train_run
from .progress import ProgressFactory, silent
from .methods import BottleneckSpec
from .specs import MethodSpec, RunSpec, TrainSpec
from .toy import TOY_LANGUAGES
from .zoo import Zoo

MARKER = ".stepstone-demo"
INTERMEDIATE = ("toy-sentiment", "toy-pair")
TARGET = "toy-tags"
# Settings for a random 128-wide backbone: higher learning rates than on a pretrained one.
ADAPTER = MethodSpec(bottleneck=BottleneckSpec(reduction_factor=4))
TRAIN = TrainSpec(lr=5e-3, epochs=10, batch_size=16)
FULL_TRAIN = TrainSpec(lr=1e-3, epochs=10, batch_size=16)


@dataclass(frozen=True)
class DemoRow:
    run: str
    setup: str
    trainable: int
    percent: float
    dev: float
    scores: dict[str, float]  # language -> main metric on the test split

    @property
    def zero_shot(self) -> float:
        others = [v for lang, v in self.scores.items() if lang != "en"]
        return sum(others) / len(others)


@dataclass(frozen=True)
class DemoResult:
    out: Path
    metric: str
    languages: tuple[str, ...]
    rows: list[DemoRow]


def run_demo(out: Path, progress: ProgressFactory = silent) -> DemoResult:
    out = Path(out)
    _fresh(out)
    zoo, runs = Zoo(out / "zoo"), out / "runs"
    for task in INTERMEDIATE:
        train_run(RunSpec(task=task, method=ADAPTER, train=TRAIN, name=f"{task}-bn"), zoo=zoo, progress=progress)
    first, second = (f"{t}-bn" for t in INTERMEDIATE)
    specs = [
        RunSpec(task=TARGET, method=ADAPTER, train=TRAIN, name="target-only"),
        RunSpec(task=TARGET, method=ADAPTER, train=TRAIN, name="stack", compose=parse(f"Stack({first})")),
        RunSpec(task=TARGET, method=ADAPTER, train=TRAIN, name="fuse", compose=parse(f"Fuse({first}, {second})")),
        RunSpec(task=TARGET, method=MethodSpec(kind="full"), train=FULL_TRAIN, name="full-finetune"),
    ]
    rows, metric = [], ""
    for spec in specs:
        outcome = train_run(spec, zoo=zoo, runs_dir=runs, progress=progress)
        result = evaluate(str(outcome.path), zoo=zoo, langs=TOY_LANGUAGES, progress=progress)
        metric = result.metric
        manifest = outcome.manifest
        setup = manifest.composition.setup if manifest.composition else (
            "full fine-tune" if spec.method.kind == "full" else spec.run_name)
        rows.append(DemoRow(spec.run_name, setup, outcome.trainable.count, outcome.trainable.percent,
                            manifest.metrics.dev[metric], {k: v[metric] for k, v in result.scores.items()}))
    result = DemoResult(out, metric, TOY_LANGUAGES, rows)
    write_text_atomic(out / "results.json", to_json({
        "task": TARGET, "metric": metric, "split": "test", "languages": list(TOY_LANGUAGES),
        "runs": [{"run": r.run, "setup": r.setup, "trainable_parameters": r.trainable,
                  "trainable_percent": r.percent, "dev": r.dev, "test": r.scores, "zero_shot_mean": r.zero_shot}
                 for r in rows]}))
    write_text_atomic(out / "results.md", markdown(result))
    return result


def markdown(result: DemoResult) -> str:
    langs = list(result.languages)
    head = ["run", "setup", "trainable", *langs, "zero-shot mean"]
    lines = [f"# stepstone demo: {TARGET} ({result.metric}, test split), trained on en only", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result.rows:
        cells = [r.run, r.setup, f"{r.trainable:,} ({r.percent:.1f}%)", *(f"{r.scores[x]:.1f}" for x in langs),
                 f"{r.zero_shot:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fresh(out: Path) -> None:
    """Start from an empty output folder; only a previous demo's folder is ever removed."""
    if out.exists() and not out.is_dir():
        raise StepstoneError(f"'{out}' is a file, not a folder; choose another --out")
    check_destination(out)  # out is made anew in its parent: a read-only place fails now, not after training
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise StepstoneError(f"'{out}' exists and is not a stepstone demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("created by `stepstone demo`; removed and rebuilt by the next run\n")
