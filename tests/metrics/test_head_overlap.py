"""Precision, recall and F1 on hand-computed cases."""

from __future__ import annotations

import math

from nodeprune.metrics import f1_score, precision, recall

PRED = {(0, 1), (1, 2), (2, 0), (3, 3)}
REF = {(0, 1), (2, 0), (5, 5)}


def test_partial_overlap():
    # 2 of 4 predicted are right; 2 of 3 reference heads are found.
    assert precision(PRED, REF) == 0.5
    assert recall(PRED, REF) == 2 / 3
    assert math.isclose(f1_score(PRED, REF), 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_perfect_and_disjoint():
    assert precision(REF, REF) == recall(REF, REF) == f1_score(REF, REF) == 1.0
    assert precision({(9, 9)}, REF) == recall({(9, 9)}, REF) == f1_score({(9, 9)}, REF) == 0.0


def test_empty_sets_are_undefined_not_zero():
    assert math.isnan(precision(set(), REF))
    assert recall(set(), REF) == 0.0
    assert math.isnan(recall(PRED, set()))
    assert math.isnan(f1_score(set(), REF))
