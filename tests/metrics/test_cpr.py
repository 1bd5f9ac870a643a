"""CPR on curves whose area is computed by hand."""

from __future__ import annotations

import pytest

from nodeprune.errors import NodepruneError
from nodeprune.metrics.cpr import cpr, curve_points


def test_perfect_curve_measured_at_both_ends():
    assert cpr([0.0, 1.0], [1.0, 1.0]) == pytest.approx(1.0)


def test_endpoints_are_added_when_not_measured():
    # Points (0,0), (0.5,1), (1,1): triangle 0.25 + rectangle 0.5.
    assert cpr([0.5], [1.0]) == pytest.approx(0.75)
    assert curve_points([0.5], [1.0]) == [(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)]


def test_trapezoids_with_unsorted_points():
    # (0,0) (0.2,0.5) (0.6,0.9) (1,1): 0.2*0.25 + 0.4*0.7 + 0.4*0.95 = 0.05 + 0.28 + 0.38
    assert cpr([0.6, 0.2], [0.9, 0.5]) == pytest.approx(0.71)


def test_measured_endpoint_overrides_the_default():
    # Measured f(0) = 0.4 and f(1) = 0.8: (0,0.4) (1,0.8) -> 0.6.
    assert cpr([1.0, 0.0], [0.8, 0.4]) == pytest.approx(0.6)


def test_faithfulness_above_one_counts():
    # (0,0) (0.5,1.5) (1,1): 0.5*0.75 + 0.5*1.25 = 1.0
    assert cpr([0.5], [1.5]) == pytest.approx(1.0)


def test_duplicates_are_averaged():
    # f(0.5) = mean(0.2, 0.6) = 0.4: (0,0) (0.5,0.4) (1,1) -> 0.1 + 0.35
    assert cpr([0.5, 0.5], [0.2, 0.6]) == pytest.approx(0.45)


@pytest.mark.parametrize(
    "fractions, values",
    [([1.5], [0.5]), ([-0.1], [0.5]), ([0.5], [float("nan")]), ([0.5, 0.6], [0.5])],
)
def test_bad_curves_are_refused(fractions, values):
    with pytest.raises(NodepruneError):
        cpr(fractions, values)
