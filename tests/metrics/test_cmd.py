"""CMD on curves whose distance to 1 is computed by hand."""

from __future__ import annotations

import pytest

from nodeprune.metrics.cmd import cmd


def test_perfect_curve_has_zero_distance():
    assert cmd([0.0, 1.0], [1.0, 1.0]) == pytest.approx(0.0)


def test_default_endpoints():
    # (0,0) (0.5,1) (1,1): |1-f| is a triangle of base 0.5 and height 1 -> 0.25.
    assert cmd([0.5], [1.0]) == pytest.approx(0.25)


def test_no_points_is_the_diagonal():
    # Only the endpoints (0,0) and (1,1): |1 - x| over [0, 1] -> 0.5.
    assert cmd([], []) == pytest.approx(0.5)


def test_overshoot_counts_as_distance():
    # (0,0) (0.5,1.5) (1,1). First segment: f goes 0 -> 1.5, crosses 1 at x = 1/3:
    # below: 1/3 * 1 / 2 = 1/6; above: (0.5 - 1/3) * 0.5 / 2 = 1/24.
    # Second segment: |1-f| from 0.5 to 0 over 0.5 -> 0.125. Total 1/6 + 1/24 + 1/8 = 1/3.
    assert cmd([0.5], [1.5]) == pytest.approx(1 / 3)


def test_cmd_is_one_minus_cpr_when_never_above_one():
    from nodeprune.metrics.cpr import cpr

    xs, ys = [0.1, 0.3, 0.7], [0.2, 0.9, 0.95]
    assert cmd(xs, ys) == pytest.approx(1 - cpr(xs, ys))
