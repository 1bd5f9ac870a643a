"""Checkpoints of a discovery run: everything needed to continue it bit for bit.

The tensors (``checkpoint.safetensors``): gate logits, AdamW moments, the data order, the
torch RNG states. The JSON (``checkpoint.json``): step, data cursor, scheduler, optimizer
hyperparameters, history, Python/NumPy RNG states, the config, the model identity and
the task file's SHA-256. The loop says what its state is and restores it itself
(``Discovery.state`` / ``Discovery.restore``, with loop_state.py for the torch objects);
this module does the file side: writing it (:func:`save_state`), the compatibility
checks on resume, the signals that stop a run, and the errors. How the two files are
written, checked and read: :mod:`nodeprune.checkpoint_io` (its names are re-exported here).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

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
    damaged,
    has_checkpoint,
    meta_checksum,
    read_checkpoint,
    read_meta,
    write_checkpoint,
)
from .errors import NodepruneError
from .fsutil import WriteError

if TYPE_CHECKING:
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
    "checkpoint_note",
    "config_differences",
    "damaged",
    "has_checkpoint",
    "meta_checksum",
    "read_checkpoint",
    "read_meta",
    "save_state",
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


def check_compatible(
    config: dict[str, Any], model: dict[str, Any], task: Task, meta: dict[str, Any], folder: Path
) -> None:
    """The checkpoint must come from the same config, model and task file as the run
    restoring it (``config``: its to_dict(); ``model``: its identity)."""
    diffs = config_differences(meta.get("config") or {}, config)
    if diffs:
        raise NodepruneError(
            f"the checkpoint in {folder} was made with another config: {'; '.join(diffs)}; "
            "resume with the checkpoint's settings, or start over with --overwrite"
        )
    saved_model, now = meta.get("model") or {}, model
    if saved_model != now:
        raise NodepruneError(
            f"the checkpoint in {folder} was made on model {saved_model.get('name')!r} "
            f"{saved_model.get('dims')}, not on {now['name']!r} {now['dims']}; load that "
            "model or start over with --overwrite"
        )
    check_task_file(meta, task, folder)


def checkpoint_note(folder: str | Path | None) -> str:
    """Where the last good checkpoint of a run that stopped is, for error messages."""
    if folder is None:
        return "no checkpoint was kept (pass a checkpoint folder to keep one)"
    if not has_checkpoint(folder):
        return f"no checkpoint had been written to {folder} yet"
    try:
        step = read_meta(folder)["step"]
    except (NodepruneError, KeyError):
        step = "?"
    return f"the last good checkpoint (after step {step}) is kept in {folder}"


class CheckpointWriteError(WriteError):
    """A checkpoint could not be written; the previous one, if any, is intact."""


def save_state(
    folder: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any], step: int
) -> Path:
    """Write a loop's state (its ``state()``); a failed write names the last good one."""
    try:
        return write_checkpoint(folder, tensors, meta)
    except WriteError as exc:
        raise CheckpointWriteError(
            f"{exc} (checkpoint after step {step}); {checkpoint_note(folder)}",
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
