"""Registered tasks. Importing this package registers every task family module: one module per task format
(`classification`, `tagging`, `qa`, `multiple_choice`, `retrieval`) holds that family's tasks and its datasets'
converters; `toy` the generated tasks. `examples.load_examples` loads a task's split."""
from . import classification, multiple_choice, qa, retrieval, tagging, toy  # noqa: F401  (register the tasks)
from .base import TASKS, DataSource, Split, TaskFormat, TaskSpec, register

__all__ = ["TASKS", "DataSource", "Split", "TaskFormat", "TaskSpec", "register", "get_task", "task_record"]


def get_task(name: str) -> TaskSpec:
    """The registered task `name`; an unknown name lists the valid ones and suggests the closest."""
    return TASKS.get(name)


def task_record(task: TaskSpec) -> dict:
    """A task as plain data (`stepstone tasks --json`): every TaskSpec field (enums by value, `source` by its
    description), plus `trainable` and `main_metric` (the key of the headline number)."""
    from dataclasses import fields
    from enum import Enum

    record = {}
    for f in fields(task):
        value = getattr(task, f.name)
        if f.name == "source":
            value = value.describe()
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        record[f.name] = value
    return {**record, "trainable": task.trainable, "main_metric": task.metric.main}
