"""Proxy: a short target-adapter training on top of each candidate's Stack, scored on English dev.

The cheapest version of the real experiment (a grid's Stack cell): `steps` optimizer steps, i.e. one epoch over
the first `steps` x batch_size training examples (at most rank's `examples`), no epoch selection, the English
dev score (the target's main metric) at the end. The bare backbone's row trains the target adapter alone. Every
run goes to a temporary folder, removed afterwards: nothing is added to the zoo.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..progress import ProgressFactory, silent
from ..specs import BackboneSpec, Block, Composition, MethodSpec, RunSpec, TrainSpec
from ..zoo import Entry, Zoo

# what proxy trains with unless told otherwise (the grid passes its target cells' settings): cpu-small's
# calibrated adapter lr outside tagging (benchmarks/results/calibration-e5-small.json), a dev sample of 200
PROXY_TRAIN = TrainSpec(lr=1e-3, batch_size=16, max_eval_examples=200)


def proxy_train(train: TrainSpec | None, steps: int, examples: int) -> TrainSpec:
    """`train` (default PROXY_TRAIN) cut to one epoch of `steps` steps over at most `examples` examples, no
    selection, no checkpoints."""
    train = train or PROXY_TRAIN
    count = min(examples, steps * train.batch_size * train.grad_accum)
    return replace(train, epochs=1, max_train_examples=count, select_best=False, dev=True, checkpoint_every=0)


def proxy_score(target: str, candidate: Entry | None, method: str, backbone: BackboneSpec, train: TrainSpec,
                data_dir: Path | None, train_split: str, zoo: Zoo, progress: ProgressFactory = silent) -> float | None:
    """The English dev score of a target adapter (`method`) trained with `train` on Stack(candidate), or
    alone (candidate None)."""
    from ..pipelines import train_run

    with tempfile.TemporaryDirectory(prefix="stepstone-proxy-") as tmp:
        # the target adapter's name: one the member cannot have (a zoo name may be 64 characters long)
        name = "proxy-target" if candidate is not None and candidate.name == "proxy" else "proxy"
        spec = RunSpec(task=(target,), name=name, method=MethodSpec(kind=method), backbone=backbone, train=train,
                       compose=None if candidate is None else Composition(Block.STACK, (candidate.name,)),
                       data_dir=data_dir, train_split=train_split)
        # the target adapter alone is a standalone adapter, saved into a zoo: a temporary one
        own = zoo if candidate is not None else Zoo(Path(tmp) / "zoo")
        outcome = train_run(spec, zoo=own, runs_dir=Path(tmp) / "runs", progress=progress)
        return outcome.manifest.metrics.main_dev
