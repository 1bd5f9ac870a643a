"""Registry of tasks: the CLI, reports and tests enumerate it."""

from __future__ import annotations

from ..errors import NodepruneError
from ..suggest import closest
from .base import Example, Task
from .docstring import DocstringTask
from .gendered_pronoun import GenderedPronounTask
from .greater_than import GreaterThanTask
from .induction import InductionTask
from .ioi import IOITask
from .sva import SVATask

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        IOITask,
        GreaterThanTask,
        GenderedPronounTask,
        SVATask,
        InductionTask,
        DocstringTask,
    )
}


def get_task(name: str) -> Task:
    """A built-in task by name; ``greater-than`` and ``greater_than`` both work."""
    key = name.strip().lower().replace("-", "_")
    if key not in TASKS:
        raise NodepruneError(
            f"unknown task {name!r}{closest(key, TASKS)}; available: {', '.join(TASKS)} "
            "(or give a file of prompt pairs with --task-file)"
        )
    return TASKS[key]()


def resolve_task(name: str, task_file: str | None = None) -> Task:
    """The task a run uses: the custom task of ``task_file`` when one is given (the
    name is then ignored), else the built-in task ``name``."""
    if task_file:
        from .custom import CustomTask

        return CustomTask.from_file(task_file)
    return get_task(name)


__all__ = ["TASKS", "Example", "Task", "get_task", "resolve_task"]
