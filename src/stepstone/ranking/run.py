"""`rank`: every candidate adapter of a target scored by the chosen estimators."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..progress import ProgressFactory, silent
from ..specs import TrainSpec
from ..zoo import Zoo
from .records import DEFAULT_ESTIMATORS, Estimator, Ranking

DEFAULT_EXAMPLES = 500  # English training examples of the target the estimators read
DEFAULT_STEPS = 50  # proxy: optimizer steps of the short target-adapter training


def rank(target: str, *, candidates: Sequence[str] | None = None,
         estimators: Sequence[Estimator] = DEFAULT_ESTIMATORS, examples: int = DEFAULT_EXAMPLES,
         data_dir: Path | None = None, zoo: Zoo | None = None, backbone: str | None = None,
         method: str | None = None, train_split: str = "train", steps: int = DEFAULT_STEPS,
         train: TrainSpec | None = None, progress: ProgressFactory = silent) -> Ranking:
    """Score `candidates` (zoo entry names; default: every zoo adapter on the backbone) and the bare backbone
    (NONE) for target task `target`, with `estimators`, on its first `examples` English `train_split` examples.
    backbone: the one the candidates were trained on (default: theirs; a candidate on another is refused).
    method: the target adapter's method for proxy (default: the candidates' own). train: proxy's training
    settings (lr, batch size, max_length, ...; `steps` caps its optimizer steps)."""
    raise NotImplementedError  # filled in by the lead (issue 15)
