"""ROC AUC and the ROC curve on hand-computed cases."""

from __future__ import annotations

import pytest

from nodeprune.errors import NodepruneError
from nodeprune.metrics import roc_auc, roc_curve


def test_perfect_inverted_and_mixed():
    labels = [1, 1, 0, 0]
    assert roc_auc([4, 3, 2, 1], labels) == 1.0
    assert roc_auc([1, 2, 3, 4], labels) == 0.0
    # Positive scores {0.9, 0.4}, negatives {0.6, 0.1}: pairs (0.9>0.6, 0.9>0.1,
    # 0.4<0.6, 0.4>0.1) -> 3 of 4.
    assert roc_auc([0.9, 0.4, 0.6, 0.1], labels) == 0.75


def test_ties_count_one_half():
    # One positive (2) and two negatives (2, 1): one tie (0.5) and one win -> 0.75.
    assert roc_auc([2, 2, 1], [1, 0, 0]) == 0.75
    assert roc_auc([5, 5, 5, 5], [1, 0, 1, 0]) == 0.5


def test_curve_points_and_area_agree():
    scores, labels = [0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0]
    fpr, tpr = roc_curve(scores, labels)
    # Thresholds below 0.9, 0.6, 0.4, 0.1 in turn.
    assert fpr == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr == [0.0, 0.5, 0.5, 1.0, 1.0]
    area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
    assert area == roc_auc(scores, labels)


def test_tied_scores_make_one_diagonal_step():
    fpr, tpr = roc_curve([5, 5, 1], [1, 0, 0])
    assert fpr == [0.0, 0.5, 1.0] and tpr == [0.0, 1.0, 1.0]


def test_one_class_only_is_a_clear_error():
    with pytest.raises(NodepruneError, match="both positive and negative"):
        roc_auc([1, 2], [1, 1])
