"""The registry of baselines: each one's name, description, properties and where its
score function lives. Torch-free, so ``nodeprune compare --help`` and its argument errors
answer at once; a score function is imported when a comparison first calls it.

Adding a baseline: its module with a score function (workbench, request -> scores), plus
one declaration here.
"""

from __future__ import annotations

from ..granularity import GRANULARITIES
from .base import Baseline

#: The granularities attribution patching scores (the registry's ``attribution`` flag).
ATTRIBUTION_GRANULARITIES = tuple(g.name for g in GRANULARITIES.values() if g.attribution)

ATTRIBUTION = Baseline(
    name="attribution",
    description="attribution patching, top-k nodes (size- and faithfulness-matched)",
    score_function="attribution:attribution_baseline_scores",
    granularities=ATTRIBUTION_GRANULARITIES,
    scoring="scores (one backward pass per batch of train prompts)",
)
#: Random draws: the mean and spread over --random-draws circuits of each size.
RANDOM = Baseline(
    name="random",
    description="random circuits of the multi-granular circuit's sizes",
    score_function="random_circuits:random_baseline_scores",
    random=True,
    scoring="{draws} draws of the multi-granular sizes",
)

#: The registry, in the order ``nodeprune compare`` runs and reports them.
BASELINES: dict[str, Baseline] = {b.name: b for b in (ATTRIBUTION, RANDOM)}
