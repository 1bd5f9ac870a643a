"""Baselines that nodeprune's circuits are compared with (``nodeprune compare``)."""

from .attribution import ATTRIBUTION_GRANULARITIES, attribution_scores
from .selection import random_scores, scaled_counts, select_top_k

__all__ = [
    "ATTRIBUTION_GRANULARITIES",
    "attribution_scores",
    "random_scores",
    "scaled_counts",
    "select_top_k",
]
