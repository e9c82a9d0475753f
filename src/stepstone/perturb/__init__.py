"""Perturbed evaluation examples (robustness, `stepstone evaluate --perturb SPEC`): `parse` a spec
(`typo:0.05`, `dropout:0.1`, `codeswitch:LEXICON:0.3`), then `perturb_examples` a task's examples with the labels
kept aligned (`align`). Deterministic: each example has its own `random.Random`, seeded from sha256 of
(seed, perturbation label, language, example index), never from Python's salted `hash`; rate 0 is the identity.

Written here rather than on nlpaug / textattack: neither seeds per example (both draw from the global `random`
/ numpy state), nlpaug's character noise draws from a fixed Latin/keyboard alphabet, not the example's script,
neither keeps tagging labels or QA answer offsets aligned, and textattack pulls in a large dependency tree.
"""
from __future__ import annotations

import hashlib
import random

from ..errors import StepstoneError
from ..tasks.base import TaskSpec
from . import noise  # noqa: F401  (registers the kinds)
from .align import ALIGNERS
from .spec import KINDS, Kind, Perturbation, parse, register

__all__ = ["KINDS", "Kind", "Perturbation", "parse", "perturb_examples", "register", "example_rng", "check_task"]


def example_rng(seed: int, perturbation: Perturbation, lang: str, index: int) -> random.Random:
    """The generator of one example: the same (seed, label, language, index) always gives the same draws."""
    digest = hashlib.sha256(f"{seed}\x00{perturbation.label}\x00{lang}\x00{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def check_task(task: TaskSpec) -> None:
    """Perturbations apply to tasks whose examples carry labels: not to retrieval tasks."""
    if not task.trainable:
        raise StepstoneError(f"--perturb applies to trained tasks: '{task.name}' is a retrieval task, whose "
                             "sentences are matched, not labelled")


def perturb_examples(task: TaskSpec, examples: list[dict], perturbation: Perturbation, seed: int,
                     lang: str) -> list[dict]:
    """`examples` of `task` perturbed, each with its own generator (see `example_rng`); labels aligned as
    `align` says per format. The input is not changed."""
    check_task(task)
    align = ALIGNERS.get(task.format.value)
    return [align(example, perturbation, example_rng(seed, perturbation, lang, i))
            for i, example in enumerate(examples)]
