"""Registry of tasks: the CLI, reports and tests enumerate it."""

from __future__ import annotations

from ..errors import NodepruneError
from ..suggest import closest
from .base import Example, Task
from .ioi import IOITask

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (IOITask,)}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise NodepruneError(
            f"unknown task {name!r}{closest(name, TASKS)}; available: {', '.join(TASKS)}"
        )
    return TASKS[name]()


__all__ = ["TASKS", "Example", "Task", "get_task", "register_task"]
