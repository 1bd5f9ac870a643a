"""The cost meter sees the time and the memory a step takes."""

from __future__ import annotations

import time

import torch

from nodeprune.baselines.cost import current_rss_mb, measure


def test_measure_sees_time_and_a_large_allocation():
    with measure("cpu") as cost:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        time.sleep(0.1)
        del block
    assert cost.wall_s >= 0.1
    assert cost.peak_mb - cost.start_mb > 40
    assert cost.to_dict()["memory_kind"] == "rss"


def test_rss_is_positive():
    assert current_rss_mb() > 0
