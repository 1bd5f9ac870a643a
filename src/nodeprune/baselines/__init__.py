"""Baselines that nodeprune's circuits are compared with (``nodeprune compare``).

The registry (:mod:`nodeprune.baselines.registry`, torch-free) maps a name to a
:class:`~nodeprune.baselines.base.Baseline`: a score function (workbench -> node scores)
with its properties. Scores become circuits and metrics through one path
(:mod:`nodeprune.baselines.circuits`). Adding a baseline is its own module plus one
declaration in the registry.
"""

from __future__ import annotations

from typing import Any

from .base import Baseline, ScoreRequest, Scores
from .registry import ATTRIBUTION_GRANULARITIES, BASELINES

#: Names that import torch, loaded on first use (``nodeprune compare --help`` needs none).
_LAZY = {
    "attribution_scores": "attribution",
    "random_scores": "selection",
    "scaled_counts": "selection",
    "select_top_k": "selection",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
