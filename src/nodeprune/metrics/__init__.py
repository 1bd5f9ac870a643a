"""Metrics that compare circuits with each other and with published circuits.

One metric per module; the registries below let reports and tests enumerate them.
"""

from __future__ import annotations

from .cmd import cmd
from .cpr import cpr
from .head_overlap import f1_score, precision, recall
from .jaccard import jaccard
from .rank_correlation import average_ranks, spearman
from .roc_auc import roc_auc, roc_curve

#: Metrics of a predicted node set against a reference set: f(predicted, reference).
SET_METRICS = {"precision": precision, "recall": recall, "f1": f1_score, "jaccard": jaccard}
#: Metrics of continuous node scores against binary labels: f(scores, labels).
SCORE_METRICS = {"roc_auc": roc_auc}
#: Areas of a faithfulness curve: f(fractions kept, normalized faithfulness).
CURVE_METRICS = {"cpr": cpr, "cmd": cmd}

__all__ = [
    "CURVE_METRICS",
    "SCORE_METRICS",
    "SET_METRICS",
    "average_ranks",
    "cmd",
    "cpr",
    "f1_score",
    "jaccard",
    "precision",
    "recall",
    "roc_auc",
    "roc_curve",
    "spearman",
]
