"""Checkpoints of a discovery run: everything needed to continue it bit for bit.

The tensors (``checkpoint.safetensors``): gate logits, AdamW moments, the data order, the
torch RNG states. The JSON (``checkpoint.json``): step, data cursor, scheduler, optimizer
hyperparameters, history, Python/NumPy RNG states, the config, the model identity and
the task file's SHA-256. How the two files are written, checked and read:
:mod:`nodeprune.checkpoint_io` (its names are re-exported here).
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import Tensor

from .checkpoint_io import (
    CHECKPOINT_FORMAT,
    META_CHECKSUM,
    META_FILE,
    READABLE_FORMATS,
    TASK_CHECKSUM,
    TENSORS_FILE,
    TMP_SUFFIX,
    checkpoint_files,
    has_checkpoint,
    meta_checksum,
    read_checkpoint,
    read_meta,
    remove_checkpoint,
    write_checkpoint,
)
from .checkpoint_io import damaged as _damaged
from .errors import NodepruneError
from .fsutil import WriteError

if TYPE_CHECKING:
    from .discovery import Discovery
    from .tasks import Task

# The file-level names of checkpoint_io are re-exported: callers import them from here.
__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointWriteError",
    "DAMAGED_ERRORS",
    "META_CHECKSUM",
    "META_FILE",
    "READABLE_FORMATS",
    "RunInterrupted",
    "StopOnSignal",
    "TASK_CHECKSUM",
    "TENSORS_FILE",
    "TMP_SUFFIX",
    "check_compatible",
    "check_task_file",
    "checkpoint_files",
    "config_differences",
    "discovery_state",
    "has_checkpoint",
    "meta_checksum",
    "model_identity",
    "read_checkpoint",
    "read_meta",
    "remove_checkpoint",
    "restore_discovery",
    "save_discovery",
    "task_file_sha256",
    "write_checkpoint",
]

DAMAGED_ERRORS = (
    KeyError,
    TypeError,
    ValueError,
    IndexError,
    AttributeError,
    RuntimeError,
    OverflowError,
    SafetensorError,
)


class RunInterrupted(NodepruneError):
    """SIGINT/SIGTERM stopped a run after a step; a checkpoint was written first."""

    def __init__(self, message: str, signum: int, step: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.step = step

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# -- the state of a Discovery ----------------------------------------------------------
def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


def _load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], saved: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in saved["state"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for current, group in zip(optimizer.param_groups, saved["param_groups"], strict=True):
        # JSON turned tuples (AdamW's betas) into lists.
        groups.append(
            {k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in group.items()}
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_state(discovery: Discovery) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"rng.generator": discovery.generator.get_state(), "rng.torch": torch.get_rng_state()}
    if discovery.loaded.device.type == "cuda":
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
    }
    return tensors, plain


def _load_rng(discovery: Discovery, tensors: dict[str, Tensor], saved: dict[str, Any]) -> None:
    discovery.generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and discovery.loaded.device.type == "cuda":
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = saved["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))


def model_identity(discovery: Discovery) -> dict[str, Any]:
    return {"name": discovery.loaded.name, "dims": discovery.loaded.dims.to_dict()}


def discovery_state(discovery: Discovery) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from . import __version__

    opt_tensors, opt_plain = _optimizer_state(discovery.optimizer)
    rng_tensors, rng_plain = _rng_state(discovery)
    tensors = {
        "gates.log_alpha": discovery.gates.log_alpha.detach(),
        "data.order": discovery.order,
        **opt_tensors,
        **rng_tensors,
    }
    meta = {
        "format_version": CHECKPOINT_FORMAT,
        "nodeprune_version": __version__,
        "step": discovery.step,
        "cursor": discovery.cursor,
        "config": discovery.config.to_dict(),
        "model": model_identity(discovery),
        "optimizer": opt_plain,
        "scheduler": discovery.scheduler.state_dict(),
        "rng": rng_plain,
        "history": [asdict(h) for h in discovery.history],
        "train_seconds": discovery.train_seconds,
        TASK_CHECKSUM: task_file_sha256(discovery.task),
    }
    return tensors, meta


def task_file_sha256(task: Task) -> str | None:
    """SHA-256 of the content a custom task was read from (None for built-in tasks)."""
    return getattr(task, "file_sha256", None)


def check_task_file(meta: dict[str, Any], task: Task, folder: Path) -> None:
    """A task file must hold what it held when the checkpoint was written."""
    if TASK_CHECKSUM not in meta:
        return  # a format-1 checkpoint: warned about when it was read
    saved, now = meta[TASK_CHECKSUM], task_file_sha256(task)
    if saved != now:
        path = getattr(task, "path", None)
        raise NodepruneError(
            f"the task file {path} has changed since the checkpoint in {folder} was "
            f"written (SHA-256 {str(saved)[:12]}... then, {str(now)[:12]}... now), so "
            "resuming would train on other prompts; restore the file, or start over with "
            "--overwrite"
        )


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [
        f"{k} {saved.get(k)!r} (checkpoint) vs {current.get(k)!r} (now)"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


def check_compatible(discovery: Discovery, meta: dict[str, Any], folder: Path) -> None:
    """The checkpoint must come from the same config and model as ``discovery``."""
    diffs = config_differences(meta.get("config") or {}, discovery.config.to_dict())
    if diffs:
        raise NodepruneError(
            f"the checkpoint in {folder} was made with another config: {'; '.join(diffs)}; "
            "resume with the checkpoint's settings, or start over with --overwrite"
        )
    saved_model, now = meta.get("model") or {}, model_identity(discovery)
    if saved_model != now:
        raise NodepruneError(
            f"the checkpoint in {folder} was made on model {saved_model.get('name')!r} "
            f"{saved_model.get('dims')}, not on {now['name']!r} {now['dims']}; load that "
            "model or start over with --overwrite"
        )
    check_task_file(meta, discovery.task, folder)


def restore_discovery(discovery: Discovery, folder: str | Path) -> None:
    """Load a checkpoint into a freshly built ``discovery`` (same config and model)."""
    from .discovery import StepLog

    d = Path(folder)
    tensors, meta = read_checkpoint(d)
    try:
        check_compatible(discovery, meta, d)
        log_alpha = tensors["gates.log_alpha"]
        if log_alpha.shape != discovery.gates.log_alpha.shape:
            raise ValueError(f"gate logits have shape {tuple(log_alpha.shape)}")
        if not torch.isfinite(log_alpha).all():
            raise ValueError("gate logits are not finite")
        order = tensors["data.order"]
        n = len(discovery.data.train)
        if order.dtype != torch.long or order.dim() != 1 or len(order) not in (0, n):
            raise ValueError("the data order does not fit the training set")
        if len(order) and not torch.equal(order.sort().values, torch.arange(n)):
            raise ValueError("the data order is not a permutation of the training set")
        step, cursor = meta["step"], meta["cursor"]
        if not (isinstance(step, int) and 0 <= step <= discovery.config.steps):
            raise ValueError(f"step {step!r} is out of range")
        if not (isinstance(cursor, int) and 0 <= cursor <= len(order)):
            raise ValueError(f"cursor {cursor!r} is out of range")
        history = [StepLog(**h) for h in meta["history"]]
        with torch.no_grad():
            discovery.gates.log_alpha.copy_(log_alpha.to(discovery.gates.log_alpha.device))
        _load_optimizer(discovery.optimizer, tensors, meta["optimizer"])
        discovery.scheduler.load_state_dict(meta["scheduler"])
        _load_rng(discovery, tensors, meta["rng"])
        discovery.order = order.clone()
        discovery.cursor = cursor
        discovery.step = step
        discovery.history = history
        discovery.train_seconds = float(meta["train_seconds"])
    except DAMAGED_ERRORS as exc:
        raise _damaged(d, f"{type(exc).__name__}: {exc}") from exc


class CheckpointWriteError(WriteError):
    """A checkpoint could not be written; the previous one, if any, is intact."""


def save_discovery(discovery: Discovery, folder: str | Path) -> Path:
    from .discovery import checkpoint_note

    tensors, meta = discovery_state(discovery)
    try:
        return write_checkpoint(folder, tensors, meta)
    except WriteError as exc:
        raise CheckpointWriteError(
            f"{exc} (checkpoint after step {discovery.step}); {checkpoint_note(folder)}",
            exc.path,
            exc.errno,
            exc.reason,
        ) from exc


# -- stopping on SIGINT / SIGTERM -------------------------------------------------------
class StopOnSignal:
    """Inside the block, SIGINT or SIGTERM asks the loop to stop after its current step
    (``received`` holds the signal number); a second signal aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        print(
            f"\nnodeprune: {signal.Signals(signum).name} received: finishing the current step "
            "and writing a checkpoint (send it again to abort at once)",
            file=sys.stderr,
        )

    def __enter__(self) -> StopOnSignal:
        if self.enabled:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
