"""The ablator of a set-up: one ablation kind on one hooked model, fitted once."""

from __future__ import annotations

import torch

from .ablations import Ablated, Ablation, SiteKey, parse_ablation
from .intervention import GatedModel, sites_for
from .prompts import PromptBatch


class Ablator:
    """Supplies ablated site values for a batch under one ablation kind."""

    def __init__(self, kind: Ablation | str, gated: GatedModel) -> None:
        self.kind = parse_ablation(kind)
        self.gated = gated
        self.means: dict[SiteKey, torch.Tensor] = {}
        #: Only the sites that the model's granularities gate under this ablation.
        self.sites = sites_for(gated.granularities, self.kind, gated.dims.n_experts > 0)

    def restricted(self, granularities: list[str]) -> Ablator:
        """The same fitted ablator recording only the sites ``granularities`` gate (a
        subset of this one's): a discovery at fewer granularities on a shared set-up."""
        view = Ablator.__new__(Ablator)
        view.kind, view.gated, view.means = self.kind, self.gated, self.means
        moe = self.gated.dims.n_experts > 0
        view.sites = tuple(s for s in sites_for(granularities, self.kind, moe) if s in self.sites)
        return view

    def fit(self, reference: PromptBatch, batch_size: int = 32) -> Ablator:
        """What the kind needs from ``reference`` (mean ablation: each site's mean)."""
        self.means = self.kind.fit(self.gated, reference, self.sites, batch_size)
        return self

    @torch.no_grad()
    def values(self, batch: PromptBatch) -> Ablated:
        return self.kind.values(self.gated, batch, self.sites, self.means)
