"""The faithfulness-matched size: bisection finds the smallest scale reaching a target."""

from __future__ import annotations

import math

import pytest

from nodeprune.baselines.search import smallest_scale_reaching


def test_finds_the_threshold_of_a_monotone_curve():
    calls = []

    def faithfulness(scale):
        calls.append(scale)
        return min(1.0, scale / 2)  # reaches 0.8 at scale 1.6

    scale, reached = smallest_scale_reaching(faithfulness, 0.8, full=4.0, steps=12)
    assert reached
    assert 1.6 <= scale <= 1.6 + 4.0 / 2**12
    assert len(calls) == 2 + 12  # full, start, then the bisection


def test_target_below_the_start_searches_downwards():
    scale, reached = smallest_scale_reaching(lambda s: s, 0.3, full=2.0, steps=10)
    assert reached and 0.3 <= scale <= 0.3 + 1.0 / 2**10


def test_unreachable_target_returns_the_full_size():
    assert smallest_scale_reaching(lambda s: 0.5 * s / 3, 0.9, full=3.0) == (3.0, False)


def test_nan_does_not_count_as_reaching():
    def faithfulness(scale):
        return math.nan if scale < 1.5 else 1.0

    scale, reached = smallest_scale_reaching(faithfulness, 0.9, full=2.0, steps=10)
    assert reached and scale == pytest.approx(1.5, abs=2.0 / 2**10)
