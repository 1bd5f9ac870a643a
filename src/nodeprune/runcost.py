"""What a run will cost, said before it is paid: the disk a run folder needs, the memory
of the reference log-probs, and how long the set-up and the steps will take.

Each check either refuses at once (what cannot fit) or warns in one line (what only
takes long), so that no run goes for hours without a word. Upper bounds on the settings
themselves are config validation's business (config.py); these are about the machine.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .errors import NodepruneError
from .fsutil import warn

if TYPE_CHECKING:
    from .discovery import Discovery
    from .models import LoadedModel

#: More prompts than this (all splits) take long to generate, filter and score.
LARGE_SETUP_PROMPTS = 50_000
#: Test prompts above which ``evaluate`` warns: three model passes each.
LARGE_EVALUATION_PROMPTS = 50_000
#: A run whose remaining steps are estimated to take longer than this is announced.
LONG_RUN_SECONDS = 3600.0
#: Steps timed before the duration of the rest is estimated.
TIMED_STEPS = 3


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def warn_large_setup(n_train: int, n_val: int, n_test: int) -> bool:
    """Before the model is loaded: say when the prompts alone will take long."""
    total = n_train + n_val + n_test
    if total <= LARGE_SETUP_PROMPTS:
        return False
    warn(
        f"{total:,} prompts (n_train {n_train:,}, n_val {n_val:,}, n_test {n_test:,}): "
        "before the first step each is generated, tokenized and run through the full "
        "model, which can take hours; a few hundred prompts per split are usually enough"
    )
    return True


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def vocab_size(loaded: LoadedModel) -> int:
    get_head = getattr(loaded.model, "get_output_embeddings", None)
    weight = getattr(get_head() if get_head else None, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    return int(getattr(getattr(loaded.model, "config", None), "vocab_size", 0) or 0)


def check_reference_memory(loaded: LoadedModel, n_train: int) -> None:
    """The full model's log-probs on every training prompt are kept (n_train x vocab
    floats): refuse a training set whose log-probs cannot fit in memory."""
    need = n_train * vocab_size(loaded) * 4
    device = loaded.device
    if device.type == "cuda":
        import torch

        have: int | None = torch.cuda.get_device_properties(device).total_memory
        where = f"the memory of {device}"
    else:
        have, where = _physical_memory(), "this machine's memory"
    if have is not None and need > have:
        raise NodepruneError(
            f"n_train {n_train:,} needs {need / 1e9:.1f} GB for the full model's reference "
            f"log-probs (n_train x vocabulary {vocab_size(loaded):,} x 4 bytes), more than "
            f"{where} ({have / 1e9:.1f} GB); lower --n-train"
        )


def run_folder_bytes(discovery: Discovery) -> int:
    """Disk a run folder needs: a checkpoint written next to the previous one, and the
    circuit JSON (a mask entry per line, and the scores of the coarse nodes)."""
    gates = discovery.gates.log_alpha.numel()
    history = discovery.config.steps * 600
    checkpoint = 3 * 4 * gates + 8 * len(discovery.data.train) + history + 100_000
    circuit = 16 * gates + history + 100_000
    return 2 * checkpoint + circuit


class DurationWatch:
    """An ``on_step`` callback: after a few steps, estimate the time the remaining steps
    take, and warn once if it is long."""

    def __init__(self, total_steps: int, limit: float | None = None) -> None:
        self.total = total_steps
        self.limit = LONG_RUN_SECONDS if limit is None else limit
        self.started: float | None = None
        self.first_step = 0
        self.done = False

    def start(self, step: int) -> None:
        self.started, self.first_step = time.monotonic(), step

    def __call__(self, discovery: Discovery) -> None:
        if self.done:
            return
        if self.started is None:  # first call: time from here on
            self.start(discovery.step)
            return
        timed = discovery.step - self.first_step
        if timed < TIMED_STEPS:
            return
        self.done = True
        per_step = (time.monotonic() - self.started) / timed
        left = per_step * (self.total - discovery.step)
        if left > self.limit:
            warn(
                f"at {per_step:.2f} s a step, the {self.total - discovery.step:,} steps left "
                f"take about {_hours(left)}; Ctrl-C stops after the current step with a "
                "checkpoint (continue later with --resume), or start over with fewer --steps"
            )


def warn_large_evaluation(n_test: int) -> bool:
    if n_test <= LARGE_EVALUATION_PROMPTS:
        return False
    warn(
        f"evaluate --n {n_test:,}: each test prompt is generated, filtered and run through "
        f"the model three times (full, circuit, ablated), which can take hours; a few "
        "hundred prompts give the faithfulness to a few hundredths (see its interval)"
    )
    return True
