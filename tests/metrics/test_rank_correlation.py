"""Spearman rank correlation on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from nodeprune.errors import NodepruneError
from nodeprune.metrics import average_ranks, spearman


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_monotone_and_reversed():
    assert spearman([1, 2, 3, 4], [10, 100, 1000, 10000]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_hand_computed_value():
    # Ranks x = 1..5, y ranks = [2, 1, 4, 3, 5]; sum d^2 = 1+1+1+1+0 = 4;
    # rho = 1 - 6 * 4 / (5 * 24) = 0.8.
    assert spearman([1, 2, 3, 4, 5], [0.2, 0.1, 0.4, 0.3, 0.5]) == pytest.approx(0.8)


def test_with_ties_is_pearson_of_average_ranks():
    # x ranks [1, 2.5, 2.5, 4], y ranks [1, 2, 3, 4]: centred x [-1.5, 0, 0, 1.5],
    # y [-1.5, -0.5, 0.5, 1.5]; cov 4.5, |x| = sqrt(4.5), |y| = sqrt(5).
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_constant_input_is_nan_and_bad_input_an_error():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(NodepruneError):
        spearman([1, 2], [1, 2, 3])
