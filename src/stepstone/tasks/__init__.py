"""Registered tasks. Importing this package registers every task family module."""
from . import catalog, toy  # noqa: F401  (register the real and the toy tasks)
from .base import TASKS, DataSource, Split, TaskFormat, TaskSpec, register

__all__ = ["TASKS", "DataSource", "Split", "TaskFormat", "TaskSpec", "register", "get_task"]


def get_task(name: str) -> TaskSpec:
    return TASKS.get(name)
