"""Training: the one loop (loop.py), what each mode trains (modes.py), resuming (resume.py) and the batch
order (batches.py)."""
from .batches import GROUP_BATCHES, _batches, schedule
from .loop import TaskData, TrainResult, enable_grad_checkpointing, train
from .modes import (MODES, Layer, Mode, ParamGroup, Trainable, TrainingMode, param_groups, register_mode,
                    set_trainable, trainable_names)

__all__ = ["GROUP_BATCHES", "Layer", "MODES", "Mode", "ParamGroup", "TaskData", "TrainResult", "Trainable",
           "TrainingMode", "_batches", "enable_grad_checkpointing", "param_groups", "register_mode", "schedule",
           "set_trainable", "train", "trainable_names"]
