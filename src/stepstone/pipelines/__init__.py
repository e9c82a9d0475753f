"""What the CLI calls, as small named steps: train a zoo adapter or a composed / fully fine-tuned run
(train.py: plan -> load data -> build model -> encode -> train -> save), rebuild a saved artifact
(inference.py), evaluate it zero-shot (evaluation.py); spec.py resolves a run's spec.

Everything that can be checked without loading a model (task, names, zoo members and their
compatibility, output paths, data) is checked before anything is loaded or written.
"""
from ..manifest import ArtifactLayout
from .evaluation import Evaluation, evaluate
from .inference import load_for_inference, resolve_artifact
from .spec import load_run_spec, set_threads
from .train import Outcome, checkpoints_of, destination_of, mode_of, train_run

FULL_WEIGHTS = ArtifactLayout.FULL_WEIGHTS

__all__ = ["Evaluation", "FULL_WEIGHTS", "Outcome", "checkpoints_of", "destination_of", "evaluate", "load_for_inference",
           "load_run_spec", "mode_of", "resolve_artifact", "set_threads", "train_run"]
