"""Running one trial: load (or reuse) the model, discover, and return a result row.

A trial never raises: whatever goes wrong is caught and recorded in its row, so one
bad grid point does not stop a sweep.

For tests and drills, ``NODEPRUNE_SWEEP_FAIL="seed=1,lam=0.9"`` makes every trial
whose config matches all the given ``key=value`` pairs raise, and
``NODEPRUNE_SWEEP_KILL`` (same syntax) makes a Ray worker process exit in the middle
of such a trial, as an out-of-memory kill would.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import DiscoveryConfig, setting
from ..errors import NodepruneError
from ..large_models import LoadOptions, load_with_options
from ..models import LoadedModel
from .grid import Trial
from .results import failed_row, finished_row

FAIL_ENV = "NODEPRUNE_SWEEP_FAIL"
KILL_ENV = "NODEPRUNE_SWEEP_KILL"
#: Exit status of a worker killed on purpose through KILL_ENV.
KILL_EXIT_STATUS = 86


class InjectedFailure(RuntimeError):
    """Raised in a trial selected by NODEPRUNE_SWEEP_FAIL."""


def _selected(spec: str, config: dict[str, Any]) -> bool:
    """Does ``config`` match every ``key=value`` in ``spec``? (numbers compare as numbers)"""
    pairs = [p.strip() for p in spec.split(",") if p.strip()]
    if not pairs:
        return False
    for pair in pairs:
        key, _, wanted = pair.partition("=")
        key = key.strip()
        value = setting(config, key)
        try:
            if float(value) != float(wanted):  # type: ignore[arg-type]
                return False
        except (TypeError, ValueError):
            if str(value) != wanted.strip():
                return False
    return True


def inject_failures(config: dict[str, Any], may_exit: bool) -> None:
    kill = os.environ.get(KILL_ENV, "")
    if kill and _selected(kill, config):
        if may_exit:
            os._exit(KILL_EXIT_STATUS)  # no clean-up on purpose: like an OOM kill
        raise InjectedFailure(f"{KILL_ENV}={kill} selects this trial")
    fail = os.environ.get(FAIL_ENV, "")
    if fail and _selected(fail, config):
        raise InjectedFailure(f"{FAIL_ENV}={fail} selects this trial")


Loader = Callable[[DiscoveryConfig, LoadOptions], LoadedModel]


def default_loader(cfg: DiscoveryConfig, options: LoadOptions) -> LoadedModel:
    return load_with_options(cfg.model, cfg.dtype, cfg.device, options)


@dataclass
class ModelCache:
    """Holds the last model loaded, so consecutive trials on it do not reload it.

    One model at a time: a worker that moves on to another model frees the first.
    """

    loader: Loader = default_loader
    loads: int = 0
    _key: tuple[Any, ...] | None = field(default=None, repr=False)
    _loaded: LoadedModel | None = field(default=None, repr=False)

    def get(self, cfg: DiscoveryConfig, options: LoadOptions) -> LoadedModel:
        key = (cfg.model, cfg.dtype, cfg.device, repr(options))
        if self._loaded is None or key != self._key:
            self._loaded = None  # drop the old model before loading the next one
            self._loaded = self.loader(cfg, options)
            self._key = key
            self.loads += 1
        return self._loaded


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_trial(
    trial: Trial, cache: ModelCache, options: LoadOptions, may_exit: bool = False
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one trial; returns its result row and its circuit as JSON (None if it failed)."""
    from ..discovery import Discovery

    start = time.perf_counter()
    discovery = None
    try:
        inject_failures(trial.config, may_exit)
        cfg = DiscoveryConfig.from_dict(dict(trial.config), source=f"trial {trial.hash}")
        cfg.validate()
        loaded = cache.get(cfg, options)
        discovery = Discovery(loaded, cfg)  # its workbench hooks the model
        circuit = discovery.run(progress=False)
        row = finished_row(trial, circuit, time.perf_counter() - start, worker_name())
        row["model_loads"] = cache.loads  # by this worker so far: shows the model is reused
        return row, circuit.to_json()
    except Exception as exc:  # a trial records any failure; the sweep moves on
        wall = time.perf_counter() - start
        if isinstance(exc, NodepruneError | InjectedFailure):
            detail = ""
        else:
            detail = "".join(traceback.format_exception(exc, limit=-3))
        error = f"{type(exc).__name__}: {exc}"
        row = failed_row(trial, error, wall, worker_name(), detail)
        row["model_loads"] = cache.loads
        return row, None
    finally:
        if discovery is not None:
            # The model is reused by the next trial: take this trial's hooks off it.
            discovery.close()
