"""The ablator of a set-up: one ablation kind on one hooked model, fitted once.

Corrupted ablation needs each prompt's corrupted activations, which do not depend on the
gates: :meth:`Ablator.record` keeps them for a whole split (the train prompts), so a
training step slices them instead of running a corrupted forward pass (about a fifth of
a step's time). Views made by :meth:`Ablator.restricted` share the recording.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ablations import Ablated, Ablation, SiteKey, parse_ablation
from .intervention import GatedModel, sites_for
from .prompts import PromptBatch

#: Most memory a recorded split may take (SmolLM2, 128 IOI prompts, the default
#: granularities: about 0.6 GB); a larger one is not recorded and every step runs the
#: corrupted pass as before.
RECORD_BYTES = 2 * 1024**3


class Ablator:
    """Supplies ablated site values for a batch under one ablation kind."""

    def __init__(self, kind: Ablation | str, gated: GatedModel) -> None:
        self.kind = parse_ablation(kind)
        self.gated = gated
        self.means: dict[SiteKey, torch.Tensor] = {}
        #: Only the sites that the model's granularities gate under this ablation.
        self.sites = sites_for(gated.granularities, self.kind, gated.dims.n_experts > 0)
        #: The recorded split (shared with the restricted views): the split it is of,
        #: and each site's values [N, T, ...] for every site of this (full) ablator.
        self.recording: dict[str, object] = {}

    def restricted(self, granularities: list[str]) -> Ablator:
        """The same fitted ablator recording only the sites ``granularities`` gate (a
        subset of this one's): a discovery at fewer granularities on a shared set-up."""
        view = Ablator.__new__(Ablator)
        view.kind, view.gated, view.means = self.kind, self.gated, self.means
        moe = self.gated.dims.n_experts > 0
        view.sites = tuple(s for s in sites_for(granularities, self.kind, moe) if s in self.sites)
        view.recording = self.recording
        view._all_sites = self.all_sites
        return view

    @property
    def all_sites(self) -> tuple[str, ...]:
        """The sites of the full ablator this one is (or is a view of)."""
        return getattr(self, "_all_sites", self.sites)

    @torch.no_grad()
    def record(self, split: PromptBatch, batch_size: int, budget: int | None = None) -> bool:
        """Keep the per-prompt ablated values of every prompt of ``split`` (corrupted
        ablation; the other kinds have none), recorded ``batch_size`` prompts at a time.
        False, and nothing kept, when they would take more than ``budget`` bytes
        (default RECORD_BYTES)."""
        budget = RECORD_BYTES if budget is None else budget
        if self.recording.get("split") is split:
            return self.recording.get("values") is not None
        if not self.kind.per_prompt:
            return False
        width = int(split.clean_ids.shape[1])
        device = self.gated.loaded.device
        parts: dict[SiteKey, list[Tensor]] = {}
        used = 0
        for part in split.batches(batch_size):
            values = self.kind.values(self.gated, part.to(device), self.all_sites, self.means)
            for key, value in values.values.items():
                # [B, T, ...] (an expert site has more dims) padded to the split's width
                padded = value.new_zeros((value.shape[0], width, *value.shape[2:]))
                padded[:, : value.shape[1]] = value
                parts.setdefault(key, []).append(padded)
                used += padded.numel() * padded.element_size()
            if used > budget:
                self.recording.clear()
                self.recording.update(split=split, values=None)  # asked once, not per step
                return False
        self.recording.clear()
        self.recording.update(split=split, values={k: torch.cat(v) for k, v in parts.items()})
        return True

    def fit(self, reference: PromptBatch, batch_size: int = 32) -> Ablator:
        """What the kind needs from ``reference`` (mean ablation: each site's mean)."""
        self.means = self.kind.fit(self.gated, reference, self.sites, batch_size)
        return self

    @torch.no_grad()
    def values(self, batch: PromptBatch, index: Tensor | None = None) -> Ablated:
        """The ablated values for ``batch``; ``index``: its prompts' rows in the recorded
        split (``batch == split.select(index)``), read from the recording when there is
        one."""
        recorded = self.recording.get("values")
        if index is not None and isinstance(recorded, dict):
            width = int(batch.clean_ids.shape[1])
            rows = index.to(next(iter(recorded.values())).device)
            picked = {key: v[rows, :width] for key, v in recorded.items() if key[0] in self.sites}
            return Ablated(picked, self.kind, per_batch=True)
        return self.kind.values(self.gated, batch, self.sites, self.means)
