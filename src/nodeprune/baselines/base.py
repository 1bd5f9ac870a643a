"""What a baseline is: a function from a set-up (a Workbench) to node scores.

A baseline only scores nodes; :mod:`nodeprune.baselines.circuits` turns any scores into
circuits of given sizes (top-k per granularity, parents first) and evaluates them on the
workbench's test prompts, the same way for every baseline. ``nodeprune compare`` is a
loop over the registry (:data:`nodeprune.baselines.BASELINES`). Adding a baseline: a
module with its score function and a :class:`Baseline`, plus one line in the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-free at import: the registry feeds `nodeprune compare --help`
    import torch
    from torch import Tensor

    from ..workbench import Workbench

#: Node scores per granularity, each of the granularity's shape: higher is kept first.
Scores = dict[str, "Tensor"]


@dataclass(frozen=True)
class ScoreRequest:
    """What a score function is asked for: the granularities to score (those of the
    reference circuit it can score), and for a random baseline which draw."""

    granularities: tuple[str, ...]
    seed: int
    draw: int = 0

    def generator(self) -> torch.Generator:
        """A generator of its own per (seed, draw): the same draw gives the same scores."""
        import torch

        return torch.Generator().manual_seed(self.seed * 1000 + self.draw)


ScoreFn = Callable[["Workbench", ScoreRequest], Scores]


@dataclass(frozen=True)
class Baseline:
    name: str
    #: One line for ``nodeprune compare --help`` and the docs.
    description: str
    #: Its score function, ``module:function`` under nodeprune.baselines: imported when
    #: first called, so declaring a baseline imports no torch.
    score_function: str
    #: The granularities it can score (None: any).
    granularities: tuple[str, ...] | None = None
    #: Its scores are random draws: its row is the mean (and spread) over several draws
    #: at the reference sizes. Otherwise one circuit per size: a size-matched row and a
    #: faithfulness-matched one (the smallest size reaching the reference faithfulness).
    random: bool = False
    #: What the log says while it scores (``{draws}``: the number of draws).
    scoring: str = "scores"

    def scores(self, bench: Workbench, request: ScoreRequest) -> Scores:
        """The node scores of this baseline on ``bench``."""
        module, _, name = self.score_function.partition(":")
        function: ScoreFn = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return function(bench, request)

    def usable(self, enabled: list[str]) -> list[str]:
        """Of the reference circuit's granularities, those this baseline scores."""
        return [g for g in enabled if self.granularities is None or g in self.granularities]
