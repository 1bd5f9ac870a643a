"""What a pruned node is replaced with: a registry of ablation kinds.

An ablation kind carries all of its own properties and behaviour: its description,
whether its ablated values pass through the MLP's affine down projection consistently
(which decides where block gates act, intervention.site_plan), whether it is fitted on
reference prompts, and the values a pruned site takes for a batch. Adding one is a
class here plus one line in ``ABLATIONS``. The ablator of a set-up (ablator.py) holds
the kind and what it was fitted to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .errors import NodepruneError
from .suggest import closest

if TYPE_CHECKING:
    from torch import Tensor

    from .prompts import PromptBatch

SiteKey = tuple[str, int]  # (site, layer); the embedding is layer 0


class Recorder(Protocol):
    """What an ablation reads activations with (a GatedModel)."""

    def record(
        self, input_ids: Tensor, attention_mask: Tensor, sites: Iterable[str] | None = None
    ) -> dict[SiteKey, Tensor]: ...


@dataclass
class Ablated:
    """What a pruned site takes for one batch: per-example activations [B, T, dim], a
    mean [dim], or nothing (the kind's ``zero``)."""

    values: dict[SiteKey, Tensor]
    ablation: Ablation
    #: The values belong to one batch and may be freed once used (corrupted ablation).
    per_batch: bool = False

    @property
    def kind(self) -> str:
        return self.ablation.name

    def get(self, key: SiteKey, release: bool = False) -> Tensor | None:
        if self.ablation.zero:
            return None
        value = self.values.pop(key, None) if release else self.values.get(key)
        if value is None:
            raise NodepruneError(
                f"no {self.kind} ablated value for site {key[0]} of layer {key[1]}: the "
                "GatedModel did not record it (build it with every granularity you gate)"
                + (" or it was released by an earlier pass" if self.per_batch else "")
            )
        return value


class Ablation:
    """One ablation kind (the instances in ABLATIONS are the kinds)."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: Every site's ablated value is consistent with the ablated values upstream of it
    #: through the MLP's (affine) down projection: ``down_proj(a_hidden) == a_out``.
    affine_consistent: ClassVar[bool] = True
    #: A pruned node takes 0: there are no stored values (the site is scaled by its gate).
    zero: ClassVar[bool] = False
    #: Its values differ per prompt (and can be recorded once per split: ablator.py).
    per_prompt: ClassVar[bool] = False

    def fit(
        self, recorder: Recorder, reference: PromptBatch, sites: tuple[str, ...], batch_size: int
    ) -> dict[SiteKey, Tensor]:
        """What the kind needs from reference prompts (nothing by default)."""
        return {}

    def values(
        self,
        recorder: Recorder,
        batch: PromptBatch,
        sites: tuple[str, ...],
        fitted: dict[SiteKey, Tensor],
    ) -> Ablated:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<ablation {self.name}>"


class Corrupted(Ablation):
    name = "corrupted"
    description = "activation on the paired corrupted prompt (interchange; default)"
    per_prompt = True

    def values(self, recorder: Any, batch: Any, sites: Any, fitted: Any) -> Ablated:
        acts = recorder.record(batch.corrupted_ids, batch.attention_mask, sites)
        return Ablated(acts, self, per_batch=True)


class Mean(Ablation):
    name = "mean"
    description = "mean activation over the reference (training) prompts, all positions"

    def fit(self, recorder: Any, reference: Any, sites: Any, batch_size: int) -> dict:
        """Each site averaged over the real tokens of ``reference``."""
        import torch

        with torch.no_grad():
            device = recorder.loaded.device
            sums: dict[SiteKey, torch.Tensor] = {}
            count = 0
            for part in reference.batches(batch_size):
                part = part.to(device)
                acts = recorder.record(part.clean_ids, part.attention_mask, sites)
                mask = part.attention_mask.unsqueeze(-1).to(torch.float32)
                for key, value in acts.items():
                    total = (value.float() * mask).sum(dim=(0, 1))
                    sums[key] = sums[key] + total if key in sums else total
                count += int(part.attention_mask.sum())
            dtype = next(recorder.model.parameters()).dtype
            return {k: (v / count).to(dtype) for k, v in sums.items()}

    def values(self, recorder: Any, batch: Any, sites: Any, fitted: Any) -> Ablated:
        if not fitted:
            raise NodepruneError("mean ablation needs Ablator.fit(reference) first")
        return Ablated(fitted, self)


class Zero(Ablation):
    name = "zero"
    description = "0 (the site is scaled by its gate)"
    #: A zeroed hidden layer still leaves the down projection's bias.
    affine_consistent = False
    zero = True

    def values(self, recorder: Any, batch: Any, sites: Any, fitted: Any) -> Ablated:
        return Ablated({}, self)


#: The registry: name -> kind.
ABLATIONS: dict[str, Ablation] = {a.name: a for a in (Corrupted(), Mean(), Zero())}


def parse_ablation(name: str | Ablation) -> Ablation:
    if isinstance(name, Ablation):
        return name
    if name not in ABLATIONS:
        raise NodepruneError(
            f"unknown ablation {name!r}{closest(name, ABLATIONS)}; choose from "
            f"{', '.join(ABLATIONS)}"
        )
    return ABLATIONS[name]
