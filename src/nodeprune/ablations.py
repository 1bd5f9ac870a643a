"""What a pruned node is replaced with: a registry of ablation kinds."""

from __future__ import annotations

from enum import StrEnum

import torch

from .data import PromptBatch
from .errors import NodepruneError
from .intervention import Ablated, GatedModel, SiteKey, sites_for
from .suggest import closest


class AblationType(StrEnum):
    CORRUPTED = "corrupted"  # interchange: the node's activation on the paired corrupted prompt
    MEAN = "mean"  # the node's mean activation over a reference set of prompts
    ZERO = "zero"  # zero


ABLATIONS = {a.value: a for a in AblationType}
DESCRIPTIONS = {
    AblationType.CORRUPTED: "activation on the paired corrupted prompt (interchange; default)",
    AblationType.MEAN: "mean activation over the reference (training) prompts, all positions",
    AblationType.ZERO: "zero",
}


def parse_ablation(name: str) -> AblationType:
    if name not in ABLATIONS:
        raise NodepruneError(
            f"unknown ablation {name!r}{closest(name, ABLATIONS)}; choose from "
            f"{', '.join(ABLATIONS)}"
        )
    return ABLATIONS[name]


class Ablator:
    """Supplies ablated site values for a batch under one ablation type."""

    def __init__(self, kind: AblationType | str, gated: GatedModel) -> None:
        self.kind = parse_ablation(kind) if isinstance(kind, str) else kind
        self.gated = gated
        self.means: dict[SiteKey, torch.Tensor] = {}
        #: Only the sites that the model's granularities gate under this ablation.
        self.sites = sites_for(gated.granularities, self.kind.value)

    @torch.no_grad()
    def fit(self, reference: PromptBatch, batch_size: int = 32) -> Ablator:
        """For mean ablation: average each site over the real tokens of ``reference``."""
        if self.kind is not AblationType.MEAN:
            return self
        sums: dict[SiteKey, torch.Tensor] = {}
        count = 0
        for part in reference.batches(batch_size):
            part = part.to(self.gated.loaded.device)
            acts = self.gated.record(part.clean_ids, part.attention_mask, self.sites)
            mask = part.attention_mask.unsqueeze(-1).to(torch.float32)
            for key, value in acts.items():
                total = (value.float() * mask).sum(dim=(0, 1))
                sums[key] = sums[key] + total if key in sums else total
            count += int(part.attention_mask.sum())
        dtype = next(self.gated.model.parameters()).dtype
        self.means = {k: (v / count).to(dtype) for k, v in sums.items()}
        return self

    @torch.no_grad()
    def values(self, batch: PromptBatch) -> Ablated:
        if self.kind is AblationType.CORRUPTED:
            acts = self.gated.record(batch.corrupted_ids, batch.attention_mask, self.sites)
            return Ablated(acts, self.kind.value, per_batch=True)
        if self.kind is AblationType.MEAN:
            if not self.means:
                raise NodepruneError("mean ablation needs Ablator.fit(reference) first")
            return Ablated(self.means, self.kind.value)
        return Ablated({}, self.kind.value)
