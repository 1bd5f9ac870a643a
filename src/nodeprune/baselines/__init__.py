"""Baselines that nodeprune's circuits are compared with (``nodeprune compare``).

The registry below maps a name to a :class:`~nodeprune.baselines.base.Baseline`: a score
function (workbench -> node scores) with its properties. Scores become circuits and
metrics through one path (:mod:`nodeprune.baselines.circuits`). Adding a baseline is
its own module plus one line here.
"""

from .attribution import ATTRIBUTION_GRANULARITIES, attribution_scores
from .attribution import BASELINE as ATTRIBUTION
from .base import Baseline, ScoreRequest, Scores
from .random_circuits import BASELINE as RANDOM
from .selection import random_scores, scaled_counts, select_top_k

#: The registry, in the order ``nodeprune compare`` runs and reports them.
BASELINES: dict[str, Baseline] = {b.name: b for b in (ATTRIBUTION, RANDOM)}

__all__ = [
    "ATTRIBUTION_GRANULARITIES",
    "BASELINES",
    "Baseline",
    "ScoreRequest",
    "Scores",
    "attribution_scores",
    "random_scores",
    "scaled_counts",
    "select_top_k",
]
