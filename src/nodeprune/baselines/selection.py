"""Circuits of given per-granularity sizes from node scores: top-k, top-down.

Granularities are filled parents first. A node is a candidate only if all its ancestors
are kept, so the k nodes of a child granularity are drawn from inside the kept parents
(the k attention neurons come from the kept heads) and the requested sizes survive
:func:`nodeprune.circuit.make_consistent` (up to parents none of whose children were
picked, which it prunes). Random circuits are the same selection with random scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..architectures.base import ModelDims
from ..circuit import full_masks, make_consistent
from ..errors import NodepruneError
from ..granularity import GRANULARITIES


def _parent_mask(masks: dict[str, Tensor], name: str) -> Tensor:
    """The (already ancestor-consistent) parent mask broadcast to ``name``'s shape."""
    shape = masks[name].shape
    parent_name = GRANULARITIES[name].parent
    if parent_name is None:
        return torch.ones(shape, dtype=torch.bool)
    parent = masks[parent_name]
    return parent.reshape(parent.shape + (1,) * (len(shape) - parent.dim())).expand(shape)


def select_top_k(
    scores: dict[str, Tensor],
    counts: dict[str, int],
    dims: ModelDims,
    enabled: list[str],
) -> dict[str, Tensor]:
    """Masks (every granularity) keeping, per enabled granularity, the ``counts[g]``
    highest-scoring nodes whose ancestors are kept; hierarchically consistent."""
    masks = full_masks(dims)
    for name in GRANULARITIES:
        allowed = _parent_mask(masks, name)
        if name not in enabled:
            masks[name] = allowed.clone()
            continue
        if name not in scores or name not in counts:
            raise NodepruneError(f"no score or size given for granularity {name}")
        score = scores[name].float().cpu()
        if tuple(score.shape) != tuple(masks[name].shape):
            raise NodepruneError(
                f"scores of {name} have shape {tuple(score.shape)}, expected "
                f"{tuple(masks[name].shape)}"
            )
        k = max(0, min(int(counts[name]), int(allowed.sum())))
        ranked = score.masked_fill(~allowed, float("-inf")).flatten()
        picked = torch.zeros(ranked.numel(), dtype=torch.bool)
        if k > 0:
            picked[torch.topk(ranked, k).indices] = True
        masks[name] = picked.view(masks[name].shape)
    return make_consistent(masks, enabled)


def random_scores(
    dims: ModelDims, granularities: list[str], generator: torch.Generator
) -> dict[str, Tensor]:
    """Uniform random scores: top-k of them is a uniformly random circuit of size k."""
    return {g: torch.rand(GRANULARITIES[g].shape(dims), generator=generator) for g in granularities}


def scaled_counts(profile: dict[str, int], scale: float, dims: ModelDims) -> dict[str, int]:
    """The per-granularity sizes ``profile`` times ``scale``, capped at each total."""
    return {g: min(GRANULARITIES[g].size(dims), int(round(scale * k))) for g, k in profile.items()}


def full_scale(profile: dict[str, int], dims: ModelDims) -> float:
    """The smallest scale at which every granularity of ``profile`` (with k > 0) is full."""
    ratios = [GRANULARITIES[g].size(dims) / k for g, k in profile.items() if k > 0]
    return max(ratios, default=1.0)


def scale_grid(profile: dict[str, int], dims: ModelDims, scales: list[float]) -> list[float]:
    """``scales`` below the full scale, plus the full scale itself, sorted."""
    top = full_scale(profile, dims)
    return sorted({s for s in scales if 0 <= s < top and not math.isclose(s, top)} | {top})
