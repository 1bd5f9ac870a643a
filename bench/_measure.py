"""Peak-memory and timing helpers shared by the benchmark scripts.

On CPU the peak is the process's resident high-water mark (VmHWM), reset right before
the first step through /proc/self/clear_refs, so transient load-time memory does not
count (the loaded model itself does); on
CUDA it is torch.cuda.max_memory_allocated after reset_peak_memory_stats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak(device: str) -> float:
    """Reset the peak counter; return the memory in use now (MB)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _status_kb("VmRSS") / 1024


def peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return _status_kb("VmHWM") / 1024


def measure(step: Callable[[], None], device: str, steps: int, warmup: int = 1) -> dict:
    """Median step time of ``steps`` calls after ``warmup`` calls, and the peak memory
    over all of them. ``base`` is the memory in use before the first call (model and
    data loaded): freed activations stay resident in the allocator's heap after the
    warm-up, so a base taken later would hide them."""
    base = reset_peak(device)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = peak_mb(device)
    return {
        "step_s": statistics.median(times),
        "peak_mb": peak,
        "base_mb": base,
        "above_base_mb": peak - base,
    }
