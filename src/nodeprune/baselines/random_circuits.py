"""The random baseline: uniformly random circuits of the reference circuit's sizes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import ScoreRequest, Scores
from .selection import random_scores

if TYPE_CHECKING:
    from ..workbench import Workbench


def random_baseline_scores(bench: Workbench, request: ScoreRequest) -> Scores:
    """Uniform random scores: top-k of them is a uniformly random circuit of size k."""
    return random_scores(bench.dims, list(request.granularities), request.generator())
