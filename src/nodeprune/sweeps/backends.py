"""Where trials run: in this process one after another, or on Ray (ray_backend.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..large_models import LoadOptions

if TYPE_CHECKING:  # .trial imports the model code (torch): only when trials run
    from .grid import Trial
    from .trial import ModelCache

#: Called with (row, circuit JSON or None) as each trial ends, in the driver process.
OnResult = Callable[[dict[str, Any], dict[str, Any] | None], None]


class Backend(Protocol):
    name: str

    def run(self, trials: list[Trial], on_result: OnResult) -> None: ...


@dataclass
class Resources:
    """What one trial asks Ray for; Ray packs trials onto nodes by these."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gb: float | None = None

    def ray_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_gb:
            options["memory"] = int(self.memory_gb * 1024**3)
        return options


class LocalBackend:
    """Trials in this process, one after another; a model is loaded once per run of
    consecutive trials that share it (the grid keeps those together)."""

    name = "local"

    def __init__(self, options: LoadOptions | None = None, cache: ModelCache | None = None):
        from .trial import ModelCache

        self.options = options or LoadOptions()
        self.cache = cache or ModelCache()

    def run(self, trials: list[Trial], on_result: OnResult) -> None:
        from .trial import run_trial

        for trial in trials:
            row, circuit_json = run_trial(trial, self.cache, self.options, may_exit=False)
            on_result(row, circuit_json)


BACKENDS = ("ray", "local")
