"""Trials as calls on Ray actors: each actor holds one model and runs trials on it.

An actor declares one trial's resources (CPUs, GPUs, memory), so Ray packs as many
actors onto each node as fit. The driver hands an idle actor the next trial for the
model it already holds, so a model is loaded once per worker, not once per trial.
An actor that dies (a crash, an out-of-memory kill) fails only its current trial and
is replaced.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from ..errors import NodepruneError
from ..large_models import LoadOptions
from .backends import OnResult, Resources
from .grid import Trial
from .results import failed_row
from .trial import ModelCache, run_trial

RAY_PIN = "ray==2.60.0"
RAY_INSTALL = f'pip install "{RAY_PIN}"  (or: pip install "nodeprune[ray]")'
#: The driver only receives rows and circuit JSON (well under 1 MB each).
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise NodepruneError(
            f"--backend ray needs Ray, which is not installed: {RAY_INSTALL}; "
            "or run the trials in this process with --backend local"
        ) from exc
    return ray


class TrialWorker:
    """The body of a Ray actor (wrapped with ``ray.remote`` at run time)."""

    def __init__(self, options: dict[str, Any], threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.options = LoadOptions(**options)
        self.cache = ModelCache()

    def run(self, trial: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        return run_trial(Trial.from_dict(trial), self.cache, self.options, may_exit=True)


class RayBackend:
    name = "ray"

    def __init__(
        self,
        options: LoadOptions | None = None,
        resources: Resources | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        max_workers: int | None = None,
    ) -> None:
        self.options = options or LoadOptions()
        self.resources = resources or Resources()
        self.address = address
        self.num_cpus = num_cpus
        self.max_workers = max_workers

    # -- cluster ---------------------------------------------------------------------
    def _init(self, ray: Any) -> None:
        common = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if self.address:
                ray.init(address=self.address, **common)
            else:
                ray.init(
                    num_cpus=self.num_cpus or os.cpu_count() or 1,
                    include_dashboard=False,
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                    **common,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local Ray instance"
            raise NodepruneError(
                f"cannot start Ray on {where}: {str(exc).splitlines()[0]}"
            ) from exc

    def n_workers(self, ray: Any, n_trials: int) -> int:
        if self.max_workers:
            return max(1, min(self.max_workers, n_trials))
        total = ray.cluster_resources()
        r = self.resources
        limits = [n_trials]
        if r.num_cpus > 0:
            limits.append(int(total.get("CPU", 0) // r.num_cpus))
        if r.num_gpus > 0:
            limits.append(int(total.get("GPU", 0) // r.num_gpus))
        if r.memory_gb:
            limits.append(int(total.get("memory", 0) // (r.memory_gb * 1024**3)))
        n = min(limits)
        if n < 1:
            have = (
                f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs, "
                f"{total.get('memory', 0) / 1024**3:.0f} GB"
            )
            raise NodepruneError(
                f"one trial asks for {r.num_cpus:g} CPUs, {r.num_gpus:g} GPUs and "
                f"{r.memory_gb or 0:g} GB but the Ray cluster has {have}; lower "
                "--trial-cpus/--trial-gpus/--trial-memory-gb, or give --max-workers to wait "
                "for an autoscaler"
            )
        return n

    # -- dispatch --------------------------------------------------------------------
    def run(self, trials: list[Trial], on_result: OnResult) -> None:
        if not trials:
            return
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            self._init(ray)
        actors: list[Any] = []
        try:
            remote_worker = ray.remote(TrialWorker).options(**self.resources.ray_options())
            threads = max(1, int(self.resources.num_cpus))

            def new_actor() -> Any:
                return remote_worker.remote(self.options.to_dict(), threads)

            actors = [new_actor() for _ in range(self.n_workers(ray, len(trials)))]
            self._dispatch(ray, actors, new_actor, trials, on_result)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started_here:
                ray.shutdown()

    def _dispatch(self, ray, actors, new_actor, trials: list[Trial], on_result: OnResult) -> None:
        queues: dict[tuple[str, ...], deque[Trial]] = {}
        for trial in trials:
            queues.setdefault(trial.model_key, deque()).append(trial)
        holding: list[tuple[str, ...] | None] = [None] * len(actors)

        def next_trial(slot: int) -> Trial:
            key = holding[slot]
            if key not in queues:  # the actor's model is done: take the longest queue
                key = max(queues, key=lambda k: len(queues[k]))
            queue = queues[key]
            trial = queue.popleft()
            if not queue:
                del queues[key]
            holding[slot] = key
            return trial

        idle = list(range(len(actors)))
        running: dict[Any, tuple[int, Trial, float]] = {}
        while queues or running:
            while idle and queues:
                slot = idle.pop()
                trial = next_trial(slot)
                ref = actors[slot].run.remote(trial.to_dict())
                running[ref] = (slot, trial, time.perf_counter())
            done, _ = ray.wait(list(running), num_returns=1)
            slot, trial, start = running.pop(done[0])
            try:
                row, circuit_json = ray.get(done[0])
            except ray.exceptions.RayActorError as exc:
                # The process died mid-trial: record it, start a fresh actor.
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                error = f"worker died: {type(exc).__name__}: {first_line}"
                row = failed_row(trial, error, time.perf_counter() - start, "ray actor")
                circuit_json = None
                actors[slot] = new_actor()
                holding[slot] = None
            except ray.exceptions.RayError as exc:
                error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                row = failed_row(trial, error, time.perf_counter() - start, "ray actor")
                circuit_json = None
            on_result(row, circuit_json)
            idle.append(slot)
