"""The one path from node scores to evaluated circuits, for every baseline.

The sizes come from a reference circuit's per-granularity profile, moved along one knob
(:func:`~nodeprune.baselines.selection.scaled_counts`: 0 empty, 1 the profile, 2 full);
at each scale the top-k nodes are selected parents first
(:func:`~nodeprune.baselines.selection.select_top_k`) and the circuit is evaluated once.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..architectures.base import ModelDims
from ..curves import curve_point
from .base import Scores
from .selection import scaled_counts, select_top_k

Masks = dict[str, Tensor]
Metrics = dict[str, float]


class ScaledCircuits:
    """The circuits of one set of scores along the size knob, each evaluated once."""

    def __init__(
        self,
        scores: Scores,
        profile: dict[str, int],
        dims: ModelDims,
        enabled: list[str],
        evaluate: Callable[[Masks], Metrics],
    ) -> None:
        self.scores, self.profile, self.dims, self.enabled = scores, profile, dims, enabled
        self.evaluate = evaluate
        self.evaluated: dict[float, tuple[Masks, Metrics]] = {}

    def at(self, scale: float) -> tuple[Masks, Metrics]:
        """The circuit at ``scale`` and its metrics."""
        if scale not in self.evaluated:
            counts = scaled_counts(self.profile, scale, self.dims)
            masks = select_top_k(self.scores, counts, self.dims, self.enabled)
            self.evaluated[scale] = (masks, self.evaluate(masks))
        return self.evaluated[scale]

    def points(self) -> list[dict]:
        """A curve point for every scale evaluated so far, in order of scale."""
        return [curve_point(m, met, scale=s) for s, (m, met) in sorted(self.evaluated.items())]
