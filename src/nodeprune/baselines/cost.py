"""Wall time and peak memory of one step of a comparison.

On CPU the peak is the process's resident set size (RSS), sampled every 20 ms by a
background thread while the step runs: ``getrusage`` only gives the high-water mark of
the whole process (a later, smaller step would show the earlier peak), and tracemalloc
does not see torch's tensor allocations. On CUDA it is ``torch.cuda.max_memory_allocated``
(reset when the step starts).
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

_PAGE = 4096


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc), else the process's peak from getrusage."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * _PAGE / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Cost:
    wall_s: float = 0.0
    peak_mb: float = 0.0  # peak RSS (CPU) or peak allocated (CUDA) during the step
    start_mb: float = 0.0  # RSS or allocated memory when the step started
    memory_kind: str = "rss"

    def to_dict(self) -> dict[str, float | str]:
        return {
            "wall_s": round(self.wall_s, 3),
            "peak_mb": round(self.peak_mb, 1),
            "peak_above_start_mb": round(self.peak_mb - self.start_mb, 1),
            "memory_kind": self.memory_kind,
        }


@contextmanager
def measure(device: torch.device | str = "cpu", interval_s: float = 0.02) -> Iterator[Cost]:
    """``with measure(device) as cost: ...``; ``cost`` is filled in when the block exits."""
    cost = Cost()
    cuda = torch.device(device).type == "cuda"
    stop = threading.Event()
    sampler = None
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cost.memory_kind = "cuda_allocated"
        cost.start_mb = cost.peak_mb = torch.cuda.memory_allocated(device) / 2**20
    else:
        cost.start_mb = cost.peak_mb = current_rss_mb()

        def sample() -> None:
            while not stop.wait(interval_s):
                cost.peak_mb = max(cost.peak_mb, current_rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.wall_s = time.perf_counter() - start
        if cuda:
            torch.cuda.synchronize(device)
            cost.peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            stop.set()
            assert sampler is not None
            sampler.join()
            cost.peak_mb = max(cost.peak_mb, current_rss_mb())
