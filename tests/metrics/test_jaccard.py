"""Jaccard overlap on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodeprune.errors import NodepruneError
from nodeprune.metrics import jaccard


def test_masks_of_any_kind():
    a = [[1, 1, 0], [0, 1, 0]]
    b = [[1, 0, 0], [0, 1, 1]]
    # intersection {(0,0), (1,1)} = 2; union {(0,0), (0,1), (1,1), (1,2)} = 4
    assert jaccard(a, b) == 0.5
    assert jaccard(torch.tensor(a).bool(), np.array(b, dtype=bool)) == 0.5


def test_sets_identical_and_disjoint():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard({1}, {1}) == 1.0
    assert jaccard({1}, {2}) == 0.0


def test_two_empty_selections_are_identical():
    assert jaccard([0, 0], [0, 0]) == 1.0
    assert jaccard(set(), set()) == 1.0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(NodepruneError, match="same shape"):
        jaccard([1, 0], [1, 0, 1])
