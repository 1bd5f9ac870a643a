"""Metrics that compare circuits with each other and with published circuits.

One metric per module.
"""

from __future__ import annotations

from .cmd import cmd
from .cpr import cpr
from .head_overlap import f1_score, precision, recall
from .jaccard import jaccard
from .rank_correlation import average_ranks, spearman
from .roc_auc import roc_auc, roc_curve

__all__ = [
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
