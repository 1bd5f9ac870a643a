"""ROC curve and its area for continuous node scores against binary labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import NodepruneError


def _check(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise NodepruneError(f"ROC needs one label per score, got {s.size} scores, {y.size} labels")
    if np.isnan(s).any():
        raise NodepruneError("ROC scores contain NaN; score every node")
    if y.all() or not y.any():
        raise NodepruneError(
            "ROC AUC needs both positive and negative nodes; the reference marks "
            f"{int(y.sum())} of {y.size}"
        )
    return s, y


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a random positive scores above a random negative, ties counting
    one half (the Mann-Whitney statistic, equal to the area under the ROC curve)."""
    s, y = _check(scores, labels)
    pos, neg = s[y], s[~y]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def roc_curve(scores: Sequence[float], labels: Sequence[bool]) -> tuple[list[float], list[float]]:
    """False- and true-positive rates as the threshold sweeps from above the highest
    score down to the lowest; tied scores move together (a diagonal step)."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # The last index of each run of equal scores: thresholds lie between distinct scores.
    cuts = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[cuts]
    fp = np.cumsum(~y)[cuts]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    return fpr.tolist(), tpr.tolist()
